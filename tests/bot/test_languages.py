"""The customer's language through the real bot and the fake Bot API: Telegram's language_code,
captions in that language, /language, and /forget taking the chosen language with it."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from bot.handlers import customer, privacy
from bot.render import colour_text
from db import UserLanguages
from lookalike.i18n import translator
from tests.bot.conftest import BotHarness
from tests.bot.test_customer import (
    buttons,
    captions,
    direct_search,
    listing_search,
    query_image,
    reply_text,
    search,
    set_product,
)

RUSSIAN_ID = 3101
SPANISH_ID = 3102
# A price as Russian and Spanish write it: "67,99 €" (a no-break space before the sign).
_PRICE = re.compile(r"(\d+),(\d\d)\xa0€")


def prices(photos_captions: list[str]) -> list[Decimal]:
    found = [_PRICE.search(caption) for caption in photos_captions]
    assert all(found), photos_captions
    return [Decimal(f"{m[1]}.{m[2]}") for m in found if m]


async def stock_the_shop(bot: BotHarness, image: bytes) -> None:
    """The imported photos have no category or price: the query's 8 nearest become rain boots
    (ranks 1, 3, 5, 7 at 50, 65, 90, 40 EUR) and sneakers (ranks 2, 4, 6, 8 at 30, 45, 60,
    70), named in English as the shop writes them."""
    ranked = [item.product.sku for item in (await direct_search(bot, image)).items]
    prices = ["50", "30", "65", "45", "90", "60", "40", "70"]
    for rank, (sku, price) in enumerate(zip(ranked, prices, strict=True), 1):
        kind = "rain_boot" if rank % 2 else "sneaker"
        name = f"Rain boot {rank}" if rank % 2 else f"Sneaker {rank}"
        set_product(bot, sku, name=name, price=price, currency="EUR", category=kind)


async def say(bot: BotHarness, user_id: int, text: str) -> str:
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text=text)
    return await reply_text(bot, user_id, after=mark)


async def test_a_russian_customer_is_answered_in_russian_and_can_switch_and_forget(
    bot: BotHarness, footwear: Path
) -> None:
    bot.api.add_user(RUSSIAN_ID, language_code="ru")
    image = query_image(footwear)
    await stock_the_shop(bot, image)
    album, listing = await search(
        bot, image, user_id=RUSSIAN_ID, caption="красные резиновые сапоги до 70 евро"
    )
    # The caption narrowed by category and price: the rain boots at 70 or less.
    names = sorted(c.split("\n")[0].split(" ", 1)[1] for c in captions(album))
    assert names == ["Rain boot 1", "Rain boot 3", "Rain boot 7"]  # the shop's own names
    assert sorted(prices(captions(album))) == [Decimal("40.00"), Decimal("50.00"), Decimal("65.00")]
    assert all("сходство" in c and "\xa0%" in c for c in captions(album))
    # Each result's colour, as Russian says it, beside its price.
    colours = [item.product.colour for item in listing_search(bot, listing).items]
    for caption, colour in zip(captions(album), colours, strict=True):
        assert colour is not None and f" · {colour_text(colour, translator('ru'))} · " in caption
    assert colour_text("navy", translator("ru")) == "тёмно-синий"
    assert listing.params["text"].startswith("<b>Самые похожие товары: резиновые сапоги до 70</b>")
    labels = [b["text"] for b in buttons(listing)]
    assert "👍 Хорошо подобрано" in labels and "👎 Не то" in labels
    assert any(label.startswith("💸 Дешевле ") and label.endswith("\xa0€") for label in labels)

    assert await say(bot, RUSSIAN_ID, "/help") == translator("ru")(customer.HELP)
    assert await say(bot, RUSSIAN_ID, "/language en") == (
        "Done: I will answer in English from now on."
    )
    assert await say(bot, RUSSIAN_ID, "/help") == customer.HELP

    languages = UserLanguages(bot.engine.sessions)
    user_ref = bot.app.bot_data.services.user_ref(RUSSIAN_ID)
    assert languages.get(user_ref) == "en"
    mark = bot.api.mark()
    bot.api.send_text(user_id=RUSSIAN_ID, text="/forget")
    question = await bot.reply_to(RUSSIAN_ID, after=mark)
    assert question.params["text"] == privacy.CONFIRM  # still in the chosen English
    mark = bot.api.mark()
    bot.api.press_button(user_id=RUSSIAN_ID, message=question, data=privacy.FORGET_YES)
    done = await bot.wait_for("editMessageText", after=mark)
    assert "your chosen language" in done.params["text"]
    assert languages.get(user_ref) is None
    # Forgotten: the Telegram client's language applies again.
    assert await say(bot, RUSSIAN_ID, "/help") == translator("ru")(customer.HELP)


async def test_a_spanish_customer_gets_spanish_menus_buttons_and_caption_filters(
    bot: BotHarness, footwear: Path
) -> None:
    bot.api.add_user(SPANISH_ID, language_code="es-419")
    welcome = await say(bot, SPANISH_ID, "/start")
    assert welcome.startswith("👋 Envíame una foto")
    image = query_image(footwear)
    await stock_the_shop(bot, image)
    album, listing = await search(
        bot, image, user_id=SPANISH_ID, caption="zapatillas por menos de 50 €"
    )
    names = sorted(c.split("\n")[0].split(" ", 1)[1] for c in captions(album))
    assert names == ["Sneaker 2", "Sneaker 4"]
    assert sorted(prices(captions(album))) == [Decimal("30.00"), Decimal("45.00")]
    assert listing.params["text"].startswith(
        "<b>Productos más parecidos en zapatillas por menos de 50</b>"
    )
    assert "👍 Buenos resultados" in [b["text"] for b in buttons(listing)]
    # The menu in each language Telegram may show; the default stays English.
    menu = {c["command"]: c["description"] for c in bot.api.commands_for(language_code="es")}
    assert menu["language"] == "Elegir el idioma de las respuestas"
    assert {c["command"] for c in bot.api.commands} >= {"start", "help", "language"}
    # A language we do not have is refused in Spanish; buttons offer the ones we have.
    assert await say(bot, SPANISH_ID, "/language pt") == (
        "Todavía no hablo «pt». Elige uno de estos: en, ru, es, fa."
    )
    mark = bot.api.mark()
    bot.api.send_text(user_id=SPANISH_ID, text="/language")
    choose = await bot.reply_to(SPANISH_ID, after=mark)
    assert [b["text"] for b in buttons(choose)] == ["English", "Русский", "Español", "فارسی"]
    mark = bot.api.mark()
    bot.api.press_button(user_id=SPANISH_ID, message=choose, data="lang:fa")
    done = await bot.wait_for("editMessageText", after=mark)
    assert done.params["text"] == "انجام شد: از این به بعد به فارسی جواب می‌دهم."
