"""Lookalike's engine: photos in, the most similar catalogue products out.

The public surface is what this module exports; everything else in the package is its
machinery. A `SearchEngine` (assembled by the composition root,
`lookalike.composition.open_engine`) holds:

- `engine.catalog` (`Catalog`): products, reads and atomic writes;
- `engine.searcher` (`Searcher`): photo bytes, a stored product or a logged search in, a
  ranked `SearchResult` out;
- `engine.models` (`ModelManager`): the active model, its post-processing, the index;
- `engine.history` (`SearchHistory`): feedback, opened results, the audit trail, /stats figures,
  and customers' data kept only SEARCH_LOG_RETENTION_DAYS or forgotten on request;

and the async boundary doors await: `search_photo`, `add_photo` and `run`. Around it: bulk
import (`import_directory`, `import_entries`), `reindex` with another backbone, `refeaturize`
with the served model's weights or runtime, images from
URLs (`fetch_image`), the checks of fields people type (`clean_*`), and every error a door
catches (search.errors).

Subpackages, each with its own facade: `search.featurize` (pixels to vectors on this CPU),
`search.index` (the vector indexes), `search.evaluation` (search quality, measured).
"""

from db.records import ImageRecord, PhotoVariant, ProductFields, ProductRecord
from search.active_model import ActiveModel, ModelManager
from search.catalog import AddOutcome, Catalog
from search.colour import describe_image, name_colours, parse_colour_synonym
from search.colour_writes import (
    ColourFillSummary,
    correct_colour,
    fill_colours,
)
from search.config import EngineConfig
from search.engine import EngineStatus, SearchEngine, StoredModel
from search.errors import (
    CatalogError,
    EvaluationError,
    FieldError,
    InvalidImageError,
    MediaStoreError,
    ModelUnavailableError,
    UrlFetchError,
)
from search.fields import (
    clean_category,
    clean_colour,
    clean_currency,
    clean_name,
    clean_price,
    clean_product_fields,
    clean_sku,
    clean_url,
)
from search.history import CatalogStats, ModelQuality, QualityReport, SearchHistory
from search.importer import (
    ImportEntry,
    ImportSummary,
    featurise_files,
    import_directory,
    import_entries,
)
from search.photo_retirement import retire_photos
from search.photo_variants import set_photo_variants
from search.refeaturizing import RefeaturizeSummary, refeaturize, refeaturize_reason
from search.reindexing import ReindexSummary, reindex
from search.results import ResultItem, SearchResult
from search.retention import ForgottenRows, PurgeReport
from search.searcher import CLI, Requester, Searcher, SearchQuery
from search.urlfetch import FetchedImage, fetch_image, fetch_image_conditional, fetch_to_file

__all__ = [
    "CLI",
    "ActiveModel",
    "AddOutcome",
    "Catalog",
    "CatalogError",
    "CatalogStats",
    "ColourFillSummary",
    "EngineConfig",
    "EngineStatus",
    "EvaluationError",
    "FetchedImage",
    "FieldError",
    "ForgottenRows",
    "ImageRecord",
    "ImportEntry",
    "ImportSummary",
    "InvalidImageError",
    "MediaStoreError",
    "ModelManager",
    "ModelQuality",
    "ModelUnavailableError",
    "PhotoVariant",
    "ProductFields",
    "ProductRecord",
    "PurgeReport",
    "QualityReport",
    "RefeaturizeSummary",
    "ReindexSummary",
    "Requester",
    "ResultItem",
    "SearchEngine",
    "SearchHistory",
    "SearchQuery",
    "SearchResult",
    "Searcher",
    "StoredModel",
    "UrlFetchError",
    "clean_category",
    "clean_colour",
    "clean_currency",
    "clean_name",
    "clean_price",
    "clean_product_fields",
    "clean_sku",
    "clean_url",
    "correct_colour",
    "describe_image",
    "featurise_files",
    "fetch_image",
    "fetch_image_conditional",
    "fetch_to_file",
    "fill_colours",
    "import_directory",
    "import_entries",
    "name_colours",
    "parse_colour_synonym",
    "refeaturize",
    "refeaturize_reason",
    "reindex",
    "retire_photos",
    "set_photo_variants",
]
