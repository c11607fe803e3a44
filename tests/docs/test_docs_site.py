"""The documentation site (tests/docs-site.sh): its links, and its module pages as a browser shows them.

The site is XEN_DISKS_DOCS_SITE (the folder of index.html; run-all builds it first), or built here
into a temporary folder. The browser is Debian's headless Chromium driven through chromedriver
(packages chromium and chromium-driver, installed by tests/setup.sh; selenium from pip): each
module page must show every option and alias ansible-doc knows for the module, and its examples.
"""
import html.parser
import json
import os
import subprocess
import tempfile
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(HERE, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site():
    built = os.environ.get("XEN_DISKS_DOCS_SITE")
    if built:
        yield built
        return
    with tempfile.TemporaryDirectory() as dest:
        out = subprocess.run([os.path.join(HERE, "tests", "docs-site.sh"), dest], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        yield os.path.dirname(out.strip().splitlines()[-1])


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for attr in ("href", "src"):
            if attrs.get(attr):
                self.links.append(attrs[attr])


def _pages(site):
    pages = {}
    for folder, _dirs, files in os.walk(site):
        if "_sources" in folder:
            continue
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(folder, name)
                parser = _Page()
                with open(path, encoding="utf-8") as handle:
                    parser.feed(handle.read())
                pages[os.path.relpath(path, site)] = parser
    return pages


def test_every_link_inside_the_site_resolves(site):
    pages = _pages(site)
    expected = {m + "_module.html" for m in MODULES} | {"readme.html", "design.html", "xenstore-layout.html"}
    assert expected <= set(pages), sorted(expected - set(pages))
    broken, outside = [], set()
    checked = 0
    for page, parsed in pages.items():
        for link in parsed.links:
            url = urllib.parse.urlsplit(link)
            if url.scheme or url.netloc:
                outside.add(url.scheme + "://" + url.netloc)
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(page), urllib.parse.unquote(url.path))) \
                if url.path else page
            checked += 1
            if not os.path.exists(os.path.join(site, target)):
                broken.append("%s -> %s (no such file)" % (page, link))
            elif url.fragment and target.endswith(".html") and url.fragment not in pages[target].ids:
                broken.append("%s -> %s (no such anchor)" % (page, link))
    print("%d links inside the site checked over %d pages; links outside: %s"
          % (checked, len(pages), ", ".join(sorted(outside)) or "none"))
    assert checked > 100
    assert not broken, "\n".join(broken)


def _doc(module):
    out = subprocess.run(["ansible-doc", "--json", "xen.disks." + module], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)["xen.disks." + module]


def _option_paths(options, prefix=""):
    """parameter anchors antsibull-docs writes: name/sub/..., one per name and alias."""
    for name, spec in options.items():
        for spelling in [name] + list(spec.get("aliases") or []):
            yield prefix + spelling
        yield from _option_paths(spec.get("suboptions") or {}, prefix + name + "/")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail("%s is missing: tests/setup.sh installs Debian's chromium and chromium-driver" % path)
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=1280,1024", "--user-data-dir=" + profile):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


@pytest.mark.parametrize("module", MODULES)
def test_module_page_shows_its_options_and_examples(site, browser, module):
    from selenium.webdriver.common.by import By

    doc = _doc(module)
    browser.get("file://" + os.path.join(site, module + "_module.html"))
    assert module in browser.title
    wanted = list(_option_paths(doc["doc"]["options"]))
    assert len(wanted) >= 3
    anchors = {e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "[id^='parameter-']")}
    missing = [p for p in wanted if "parameter-" + p not in anchors]
    assert not missing, "options not on the page: %s" % missing
    # Each top-level option's title (its name in bold) is on screen once its row is scrolled to.
    # (Sphinx writes ids with hyphens for underscores.)
    prefix = "ansible-collections-xen-disks-%s-module-parameter-" % module.replace("_", "-")
    titles = {e.get_attribute("id"): e for e in browser.find_elements(By.CSS_SELECTOR, "p.ansible-option-title")}
    for name in doc["doc"]["options"]:
        title = titles.get(prefix + name.replace("_", "-"))
        assert title is not None, "no title for option %s" % name
        browser.execute_script("arguments[0].scrollIntoView();", title)
        assert title.is_displayed() and title.text.strip() == name
    # The examples: the section and its code, as ansible-doc has them.
    section = browser.find_element(By.ID, "examples")
    browser.execute_script("arguments[0].scrollIntoView();", section)
    assert section.is_displayed()
    code = "\n".join(e.text for e in section.find_elements(By.CSS_SELECTOR, "div.highlight pre"))
    example_tasks = [line.split("name:", 1)[1].strip() for line in doc["examples"].splitlines()
                     if line.lstrip().startswith("- name:")]
    assert example_tasks, "EXAMPLES of %s name no task" % module
    for task in example_tasks:
        assert task in code, "example %r not shown" % task


def test_index_lists_modules_and_guides(site, browser):
    from selenium.webdriver.common.by import By

    browser.get("file://" + os.path.join(site, "index.html"))
    links = {e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, "a") if e.is_displayed()}
    for module in MODULES:
        assert any(text.startswith(module) for text in links), "%s not linked from the index" % module
    body = browser.find_element(By.TAG_NAME, "body").text
    for heading in ("Design", "xenstore"):
        assert heading.lower() in body.lower()
