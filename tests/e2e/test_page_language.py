"""The page speaks Brazilian Portuguese by default, English to a browser that asks
for it, and switches on request (issue 13)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Stack
from tests.e2e.conftest import Pages, room_id

pytestmark = pytest.mark.e2e


async def open_in(browser: Browser, stack: Stack, room: str, locale: str):
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    token = stack.token(room, f"pt-{locale}", "patient", display_name="Paciente")
    await page.goto(f"{stack.url}/consult/{room}#token={token}")
    return context, page


async def test_portuguese_by_default_english_on_request(
    browser: Browser, stack: Stack, pages: Pages
) -> None:
    room = room_id()
    await pages.open(room, "dr-lang", "physician", "Dra. Ana")  # someone to see
    context, page = await open_in(browser, stack, room, "pt-BR")
    try:
        await expect(page.locator("#status")).to_have_text("Conectado", timeout=15000)
        assert await page.title() == "Teleconsulta"
        assert await page.locator("html").get_attribute("lang") == "pt-BR"
        await expect(page.locator("#leave")).to_have_text("Sair")
        await expect(page.get_by_role("button", name="Sair da consulta")).to_be_enabled()
        await expect(page.locator("#mic")).to_have_text("Microfone ligado")
        caption = page.locator('.tile[data-peer-id="dr-lang"] figcaption')
        await expect(caption).to_have_text("Dra. Ana (médico(a))")
        await page.locator("#mic").click()
        await expect(page.locator("#mic")).to_have_text("Microfone desligado")

        await page.locator("#lang").click()  # the switch: English, remembered
        await expect(page.locator("#status")).to_have_text("Connected", timeout=15000)
        assert await page.title() == "Video consultation"
        await expect(page.locator("#leave")).to_have_text("Leave")
    finally:
        await context.close()

    # A browser that prefers English gets English without asking.
    context, page = await open_in(browser, stack, room_id(), "en-US")
    try:
        await expect(page.locator("#status")).to_have_text("Connected", timeout=15000)
        await expect(page.locator("#camera")).to_have_text("Camera on")
    finally:
        await context.close()
