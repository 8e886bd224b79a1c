"""The difference between the catalogue and the feed, as a plan (pure: no I/O).

- add: feed products the catalogue does not have (created by their first stored photo);
- update: name, price, currency, link or category differ (no photo is featurised again);
- variants: photos a product holds whose variant (link, price now) changed in the feed;
- colours: photos a product holds whose variant's `color` (a palette name) is now another
  than the photo's named colour (a feed that corrects "Black" to "Navy"); a colour the feed
  drops or does not know leaves the photo's name as it is;
- stock: in-stock flag differs;
- restore: products the feed hid earlier that are back in the feed;
- hide: products the feed owns (it listed them before) that are active but gone from the feed.
  Products an admin added by hand were never listed by the feed, so it never hides them;
- images: every photo URL of every feed product that will be visible, with what the last sync
  stored for it (ETag, Last-Modified, content hash), for a conditional request. The stored
  state is used only when the catalogue really holds that photo for that product, so a sync
  killed between download and storing downloads the photo again next time.
A product an admin removed (not the feed) stays removed: its fields are kept up to date, its
photos are not fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from feed.grouping import FeedProduct
from search import PhotoVariant, ProductFields

COMPARED_FIELDS = ("name", "price", "currency", "url", "category")


@dataclass(frozen=True, slots=True)
class CatalogueProduct:
    """What the catalogue holds for a SKU (removed ones included)."""

    fields: ProductFields
    in_stock: bool
    removed: bool
    image_hashes: frozenset[str]
    # content hash -> the variant (link, price) that photo shows; None: the product's own
    photo_variants: Mapping[str, PhotoVariant | None] = field(default_factory=dict)
    # content hash -> that photo's named colour (the feed's word or the computed one)
    photo_colours: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OwnedState:
    """A SKU the feed has listed at least once (table feed_products)."""

    hidden_by_feed: bool


@dataclass(frozen=True, slots=True)
class StoredImage:
    """What the last download of a photo URL of a product returned."""

    etag: str | None
    last_modified: str | None
    content_hash: str | None


@dataclass(frozen=True, slots=True)
class ImageJob:
    sku: str
    url: str
    position: int  # 0: the product's main photo
    conditional: StoredImage | None  # None: download unconditionally
    new_product: bool


@dataclass
class SyncPlan:
    add: list[FeedProduct] = field(default_factory=list)
    update: list[tuple[FeedProduct, tuple[str, ...]]] = field(default_factory=list)
    stock: list[tuple[str, bool]] = field(default_factory=list)
    restore: list[str] = field(default_factory=list)
    hide: list[str] = field(default_factory=list)
    kept_removed: list[str] = field(default_factory=list)  # removed by an admin, still listed
    unchanged: list[str] = field(default_factory=list)
    images: list[ImageJob] = field(default_factory=list)
    # sku -> {content hash: variant} for photos the product holds whose variant changed
    variants: dict[str, dict[str, PhotoVariant | None]] = field(default_factory=dict)
    # sku -> {content hash: colour name} for photos the product holds whose feed colour changed
    colours: dict[str, dict[str, str]] = field(default_factory=dict)
    active_before: int = 0

    @property
    def hide_share(self) -> float:
        """Share of the active catalogue this plan hides."""
        return len(self.hide) / self.active_before if self.active_before else 0.0

    def counts(self) -> dict[str, int]:
        return {
            "add": len(self.add),
            "update": len(self.update),
            "stock": len(self.stock),
            "restore": len(self.restore),
            "hide": len(self.hide),
            "kept_removed": len(self.kept_removed),
            "unchanged": len(self.unchanged),
            "images_to_check": len(self.images),
            # photos whose variant changed: its link or price, its colour, or both
            "variant_photos": sum(
                len(set(self.variants.get(sku, {})) | set(self.colours.get(sku, {})))
                for sku in set(self.variants) | set(self.colours)
            ),
        }


def changed_fields(old: ProductFields, new: ProductFields) -> tuple[str, ...]:
    return tuple(name for name in COMPARED_FIELDS if getattr(old, name) != getattr(new, name))


def plan_sync(
    feed: Mapping[str, FeedProduct],
    catalogue: Mapping[str, CatalogueProduct],
    owned: Mapping[str, OwnedState],
    images: Mapping[tuple[str, str], StoredImage],
) -> SyncPlan:
    plan = SyncPlan(active_before=sum(1 for p in catalogue.values() if not p.removed))
    for sku, product in feed.items():
        current = catalogue.get(sku)
        if current is None:
            plan.add.append(product)
            plan.images.extend(_image_jobs(product, frozenset(), images, new=True))
            continue
        touched = False
        changes = changed_fields(current.fields, product.fields)
        if changes:
            plan.update.append((product, changes))
            touched = True
        if current.in_stock != product.in_stock:
            plan.stock.append((sku, product.in_stock))
            touched = True
        variants, colours = _held_photo_changes(product, current, images)
        if variants:
            plan.variants[sku] = variants
            touched = True
        if colours:
            plan.colours[sku] = colours
            touched = True
        if current.removed:
            state = owned.get(sku)
            if state is None or not state.hidden_by_feed:
                plan.kept_removed.append(sku)
                continue
            plan.restore.append(sku)
            touched = True
        if not touched:
            plan.unchanged.append(sku)
        plan.images.extend(_image_jobs(product, current.image_hashes, images, new=False))
    for sku in sorted(owned):
        current = catalogue.get(sku)
        if sku not in feed and current is not None and not current.removed:
            plan.hide.append(sku)
    return plan


def _held_photo_changes(
    product: FeedProduct,
    current: CatalogueProduct,
    images: Mapping[tuple[str, str], StoredImage],
) -> tuple[dict[str, PhotoVariant | None], dict[str, str]]:
    """Held photos (known by their URL's last download) the feed now describes otherwise, by
    content hash: those whose variant (link, price) is no longer the one the feed gives them
    -> the variant now; those whose variant's colour, as a palette name, is not the photo's
    named colour -> that name (a colour the feed drops or does not know changes nothing). A
    photo two URLs share: the first URL that changes it."""
    variants: dict[str, PhotoVariant | None] = {}
    colours: dict[str, str] = {}
    for url in product.image_urls:
        stored = images.get((product.sku, url))
        if stored is None or stored.content_hash not in current.image_hashes:
            continue
        digest = stored.content_hash
        wanted = product.photo_variant(url)
        if digest not in variants and current.photo_variants.get(digest) != wanted:
            variants[digest] = wanted
        variant = product.variant_of(url)
        name = variant.colour_name if variant is not None else None
        if digest not in colours and name is not None and current.photo_colours.get(digest) != name:
            colours[digest] = name
    return variants, colours


def _image_jobs(
    product: FeedProduct,
    held: frozenset[str],
    images: Mapping[tuple[str, str], StoredImage],
    *,
    new: bool,
) -> list[ImageJob]:
    jobs = []
    for position, url in enumerate(product.image_urls):
        stored = images.get((product.sku, url))
        usable = stored is not None and stored.content_hash in held
        jobs.append(
            ImageJob(
                sku=product.sku,
                url=url,
                position=position,
                conditional=stored if usable else None,
                new_product=new,
            )
        )
    return jobs
