"""Lookalike's engine: photos in, the most similar catalogue products out.

The public surface is what this module exports; everything else in the package is its
machinery. An `Engine` (assembled by the composition root, `lookalike.app.open_engine`) holds:

- `engine.catalog` (`Catalog`): products, reads and atomic writes;
- `engine.searcher` (`Searcher`): photo bytes, a stored product or a logged search in, a
  ranked `SearchResult` out;
- `engine.models` (`ModelManager`): the active model, its post-processing, the index;
- `engine.history` (`SearchHistory`): feedback, opened results, the audit trail, /stats figures,
  and customers' data kept only SEARCH_LOG_RETENTION_DAYS or forgotten on request;

and the async boundary doors await: `search_photo`, `add_photo` and `run`.

The model an engine serves comes from a `ModelLoader` (its `featurizer_provider`): the
exported model on the runtime measured for this CPU (`RuntimeDecision`), without TensorFlow.
"""

from db.records import ImageRecord, ProductFields, ProductRecord
from search.catalog import AddOutcome, Catalog
from search.config import EngineConfig
from search.engine import Engine, EngineStatus
from search.errors import CatalogError, InvalidImageError
from search.fields import FieldError
from search.history import CatalogStats, QualityReport, SearchHistory
from search.images import PreparedImage
from search.model_loader import ModelLoader
from search.models import ActiveModel, ModelManager
from search.results import ResultItem, SearchResult
from search.retention import ForgottenRows, PurgeReport
from search.runtime_record import RuntimeDecision, RuntimeTrial
from search.searcher import CLI, Requester, Searcher, SearchQuery

__all__ = [
    "CLI",
    "ActiveModel",
    "AddOutcome",
    "Catalog",
    "CatalogError",
    "CatalogStats",
    "Engine",
    "EngineConfig",
    "EngineStatus",
    "FieldError",
    "ForgottenRows",
    "ImageRecord",
    "InvalidImageError",
    "ModelLoader",
    "ModelManager",
    "PreparedImage",
    "ProductFields",
    "ProductRecord",
    "PurgeReport",
    "QualityReport",
    "Requester",
    "ResultItem",
    "RuntimeDecision",
    "RuntimeTrial",
    "SearchHistory",
    "SearchQuery",
    "SearchResult",
    "Searcher",
]
