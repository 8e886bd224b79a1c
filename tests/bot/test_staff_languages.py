"""Staff and admins are answered in their language too (their Telegram client's, or /language),
through the real bot and the fake Bot API; the audit trail keeps English, and the engine's own
reasons stay as search/ wrote them."""

from __future__ import annotations

from pathlib import Path

from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, SUPPORT_ID, BotHarness
from tests.bot.test_admin import audit_details, say, sku_of


async def test_a_russian_speaking_admin_gets_russian_replies_and_an_english_audit(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    bot.api.add_user(ADMIN_ID, language_code="ru")
    sku = sku_of(catalog_photos[3])

    assert await say(bot, f"/remove {sku}") == (
        f"🗑 <b>{sku}</b> удалён: покупатели его больше не видят. Он остаётся в каталоге; "
        f"вернуть его можно командой /restore {sku}."
    )
    assert await say(bot, f"/stock {sku} out") == (
        f"📭 <b>{sku}</b> нет в наличии: покупатели его больше не видят."
    )
    assert await say(bot, f"/restore {sku}") == (
        f"↩️ <b>{sku}</b> восстановлен: покупатели его пока не видят: статус «нет в наличии»."
    )
    assert await say(bot, f"/stock {sku} in") == (
        f"📦 <b>{sku}</b> в наличии: покупатели снова могут его найти."
    )
    assert await say(bot, f"/stock {sku} maybe") == (
        "Как использовать: /stock АРТИКУЛ in|out (in — в наличии, out — нет)"
    )
    # The bot's own reason for refusing a details line is Russian; the engine's stays English.
    refused = await say(bot, "/add SNK 1 two words")
    assert refused.startswith(
        "Не добавлено: разделяйте поля знаком «|»: артикул | название | цена | ссылка | "
        "категория.\n\nЧтобы добавить товар, пришлите его фото с подписью <code>/add</code> "
        "<code>артикул | название | цена | ссылка | категория</code>"
    )
    gone = await say(bot, "/remove NOPE-404")
    assert gone.startswith("Ничего не изменено: ") and "NOPE-404" in gone

    stats = await say(bot, "/stats")
    assert stats.startswith("<b>Каталог</b>\nТовары: 300 активных из 300\n<b>Поиски</b>\n")
    assert "Медианное время поиска (7 дней): поисков пока не было" in stats

    mark = bot.api.mark()
    bot.api.send_text(user_id=ADMIN_ID, text=f"/product {sku}")
    card = await bot.wait_for("sendPhoto", after=mark)
    assert "Статус: в наличии · 1 изображение · id " in card.params["caption"]

    # The audit trail is read by people who may not read Russian: English there.
    errors = [d["error"] for d in audit_details(bot) if "error" in d]
    assert errors[0] == "Usage: /stock SKU in|out"
    assert errors[1].startswith("Not added: separate the fields with '|'")
    assert errors[2].startswith("Nothing changed: ")

    # /language works for staff as for customers.
    await say(bot, "/language en")
    assert await say(bot, f"/stock {sku} maybe") == "Usage: /stock SKU in|out"


async def test_spanish_support_staff_and_a_spanish_customer_refused_an_admin_command(
    bot: BotHarness,
) -> None:
    bot.api.add_user(SUPPORT_ID, language_code="es")
    bot.api.add_user(CUSTOMER_ID, language_code="es-ES")
    assert await say(bot, "/link NOPE-1", user_id=SUPPORT_ID) == (
        "No hay ningún producto con el SKU <code>NOPE-1</code>. Revisa cómo está escrito "
        "(los SKU distinguen mayúsculas y minúsculas)."
    )
    assert await say(bot, "/link", user_id=SUPPORT_ID) == (
        "Uso: <code>/link SKU</code>, por ejemplo <code>/link SNK-001</code>"
    )
    assert await say(bot, "/stock X in", user_id=CUSTOMER_ID) == (
        "Lo siento, este comando es solo para los administradores de la tienda."
    )


async def test_inline_cards_are_in_the_askers_language_and_personal(bot: BotHarness) -> None:
    bot.api.add_user(CUSTOMER_ID, language_code="ru")
    sku = "footwear_0042"
    mark = bot.api.mark()
    bot.api.inline_query(user_id=CUSTOMER_ID, query=sku)
    answer = await bot.wait_for("answerInlineQuery", after=mark)
    assert answer.ok, answer.description
    # Personal: Telegram caches the answer per user, so no one gets another's language.
    assert answer.params["is_personal"] is True
    (result,) = answer.params["results"]
    assert result["description"].startswith(f"Артикул {sku} · ")
    assert result["input_message_content"]["message_text"].split("\n")[1].startswith("Артикул")
    labels = [b["text"] for row in result["reply_markup"]["inline_keyboard"] for b in row]
    assert "🔎 Похожие товары" in labels
