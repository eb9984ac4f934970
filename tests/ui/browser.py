"""Debian's chromium, headless, driven through its own chromedriver (/usr/bin/chromedriver): no
Selenium Manager, no download, no network beyond loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

DRIVER = Path("/usr/bin/chromedriver")
PHONE = (375, 812)
DESKTOP = (1280, 900)


def available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not DRIVER.exists():
        return f"{DRIVER} is missing: run scripts/setup-system (Debian's chromium-driver)"
    if shutil.which("chromium") is None:
        return "chromium is missing: run scripts/setup-system"
    return None


def chromium(size: tuple[int, int] = DESKTOP, dark: bool = False) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        f"--window-size={size[0]},{size[1]}",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    else:
        options.add_argument("--blink-settings=preferredColorScheme=1")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.set_window_size(*size)
    return driver
