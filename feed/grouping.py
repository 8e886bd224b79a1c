"""Feed items -> catalogue products: variants of one product (same item_group_id) become one
product, so a search shows one result per product rather than eight colours of one shoe.

A group is stored as one product whose SKU is the group id:
- name and link: the first variant's (in feed order); category: the first variant's the
  category map knows;
- price: what the customer pays now (sale prices applied) for the cheapest variant in stock,
  or the cheapest of all when none is in stock, so "under 60 EUR" finds the product when some
  colour costs less than 60;
- in stock: when any variant is;
- photos: every variant's image_link and additional_image_link, in feed order, without
  repeats, at most `max_images` (the variants' own SKUs are not stored); a photo's named colour
  is its variant's `color` when the palette's synonyms know that word (it wins over the colour
  computed from the pixels), otherwise the computed one, and the row is reported.
Each variant is kept as a FeedVariant (its id, colour, link, price now, stock and photos), and
`variant_of(url)` says which variant a photo came from: the catalogue stores, per photo, its
variant's colour name, link and price (`photo_variant`), so a search that matched the red
variant's photo shows the red link, price and colour.
An item without item_group_id is a product of its own with its id as SKU. Group ids and item
ids are separate namespaces (Google's rule): a standalone item whose id is also some group's
item_group_id is not merged into that group; since both would be the same catalogue key, the
group's rows are skipped with that reason and the standalone product kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from feed.categories import CategoryMap
from feed.items import FeedItem
from search import PhotoVariant, ProductFields, parse_colour_synonym


@dataclass(frozen=True, slots=True)
class FeedVariant:
    """One row of a product: a variant (or the product itself when it has none)."""

    id: str
    color: str | None  # as the feed writes it ("Navy Blue")
    colour_name: str | None  # that colour as one of the colour NAMES ("navy"); None: unknown
    link: str | None
    price: Decimal  # what the customer pays now (sale applied)
    in_stock: bool
    image_urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeedProduct:
    """One catalogue product as the feed describes it."""

    fields: ProductFields
    in_stock: bool
    image_urls: tuple[str, ...]
    variants: tuple[FeedVariant, ...]  # in feed order (one for a product without variants)
    label: str  # where it starts in the feed, for messages ("item 12")

    @property
    def sku(self) -> str:
        return self.fields.sku

    @property
    def variant_ids(self) -> tuple[str, ...]:
        return tuple(variant.id for variant in self.variants)

    def variant_of(self, url: str) -> FeedVariant | None:
        """The first variant (in feed order) that lists this photo."""
        return next((v for v in self.variants if url in v.image_urls), None)

    def photo_variant(self, url: str) -> PhotoVariant | None:
        """What the catalogue stores for this photo: the link and price of its variant when
        the product has several (a search matching it shows them), else None (the product's
        own link and price, kept up to date on the product alone)."""
        if len(self.variants) < 2:
            return None
        variant = self.variant_of(url)
        if variant is None:
            return None
        return PhotoVariant(link=variant.link, price=variant.price, currency=self.fields.currency)


@dataclass
class _Group:
    label: str
    items: list[FeedItem] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # each item's row, for messages


@dataclass
class GroupingResult:
    products: dict[str, FeedProduct]
    skipped: list[tuple[str, str]]  # (label, reason)
    # Rows used, with something of theirs ignored: (label, reason), e.g. an unknown colour.
    problems: list[tuple[str, str]] = field(default_factory=list)


def group_items(
    labelled: Iterable[tuple[str, FeedItem]],
    *,
    categories: CategoryMap,
    now: datetime,
    max_images: int,
) -> GroupingResult:
    groups: dict[tuple[bool, str], _Group] = {}  # (is a group, its id) -> its rows
    seen_ids: set[str] = set()
    skipped: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for label, item in labelled:
        if item.sku in seen_ids:
            skipped.append((label, f"id {item.sku!r} appears twice in the feed"))
            continue
        seen_ids.add(item.sku)
        key = (True, item.group_id) if item.group_id else (False, item.sku)
        group = groups.setdefault(key, _Group(label=label))
        if group.items and group.items[0].currency != item.currency:
            skipped.append(
                (
                    label,
                    f"variant priced in {item.currency}, its group in {group.items[0].currency}",
                )
            )
            continue
        group.items.append(item)
        group.labels.append(label)
        if item.color and parse_colour_synonym(item.color) is None:
            problems.append(
                (
                    label,
                    f"colour {item.color[:60]!r} is not a colour name or synonym we know; "
                    "the colour seen in its photos is used",
                )
            )
    products: dict[str, FeedProduct] = {}
    for (is_group, sku), group in groups.items():
        if is_group and (False, sku) in groups:
            reason = f"item_group_id {sku!r} is also the id of a product without variants"
            skipped.extend((label, reason) for label in group.labels)
            continue
        products[sku] = _product(sku, group, categories=categories, now=now, max_images=max_images)
    return GroupingResult(products=products, skipped=skipped, problems=problems)


def _product(
    sku: str, group: _Group, *, categories: CategoryMap, now: datetime, max_images: int
) -> FeedProduct:
    first = group.items[0]
    in_stock = [item for item in group.items if item.in_stock]
    price: Decimal = min(item.price_at(now) for item in (in_stock or group.items))
    urls: list[str] = []
    for item in group.items:
        urls.extend(url for url in item.image_links if url not in urls)
    category = next(
        (
            found
            for item in group.items
            if (found := categories.category_for(item.product_type, item.google_category))
        ),
        None,
    )
    return FeedProduct(
        fields=ProductFields(
            sku=sku,
            name=first.title,
            price=price,
            currency=first.currency,
            url=first.link,
            category=category,
        ),
        in_stock=bool(in_stock),
        image_urls=tuple(urls[:max_images]),
        variants=tuple(
            FeedVariant(
                id=item.sku,
                color=item.color,
                colour_name=parse_colour_synonym(item.color) if item.color else None,
                link=item.link,
                price=item.price_at(now),
                in_stock=item.in_stock,
                image_urls=item.image_links,
            )
            for item in group.items
        ),
        label=group.label,
    )
