"""The active model: which backbone searches use, its fitted post-processing, its loaded
featurizer, and the index of its vectors this process searches.

The database says which model is active (table search_models, one row active) and holds its
post-processing (by default signed square root, L2-normalise, minus the catalogue mean, fitted
on the catalogue). Every stored raw (dim,) vector has its post-processed index vector beside
it; queries go through the same transform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.media import MediaStore, MediaStoreError
from db.tables import ProductImage, SearchModel
from search.config import PostprocessKind
from search.errors import CatalogError, InvalidImageError, ModelUnavailableError
from search.featurize import BackboneSpec, Featurizer, ImagePreparer, PreparedImage, get_backbone
from search.index import LiveIndex, SearchIndex
from search.postprocess import PostProcessor

__all__ = ["MIN_FIT_VECTORS", "ActiveModel", "ModelManager", "producer_runtime"]

log = logging.getLogger(__name__)

# The post-processing's catalogue mean is fitted once there are this many vectors, and again
# whenever the catalogue has doubled since (at start and after an import): a mean of a handful
# of photos would centre on those photos.
MIN_FIT_VECTORS = 16


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """The model searches use: its stored name, backbone and fitted post-processing."""

    name: str  # e.g. "vgg16_avgpool", what embeddings.model_name holds
    backbone: BackboneSpec
    post: PostProcessor

    @property
    def dim(self) -> int:
        return self.backbone.dim


def producer_runtime(featurizer: Featurizer) -> str:
    """The runtime a featurizer runs on ("openvino-int8", "keras", ...), as recorded beside
    the vectors it produced; "unknown" for a stand-in without one."""
    return str(getattr(featurizer, "runtime", "unknown"))


def postprocess_matches(post: PostProcessor, kind: PostprocessKind) -> bool:
    if kind == "none":
        return post.is_identity
    return post.power == 0.5 and post.normalize and post.projection is None


class ModelManager:
    """Thread-safe. `write_lock` is held while the catalogue or the active model changes."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        featurizer_provider: Callable[[str], Featurizer],
        preparer: ImagePreparer,
        live: LiveIndex,
        media: MediaStore,
        postprocess: PostprocessKind,
        weights: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._weights = weights  # the served model's weights tag; None: not checked
        self._media = media
        self._featurizer_provider = featurizer_provider
        self._featurizer: Featurizer | None = None
        self._featurizer_backbone: str | None = None
        self._featurizer_lock = threading.Lock()
        self._preparer = preparer
        self._live = live
        self._postprocess = postprocess
        self.write_lock = threading.RLock()
        vgg16 = get_backbone("vgg16")
        self._active = ActiveModel(name=vgg16.model_name, backbone=vgg16, post=PostProcessor())

    @property
    def active(self) -> ActiveModel:
        return self._active

    @property
    def loaded(self) -> bool:
        """Whether the active backbone's model is in memory."""
        return self._featurizer_backbone == self._active.backbone.name

    @property
    def index(self) -> SearchIndex:
        """The index of the active model's vectors (replaced whole on a reload)."""
        return self._live.current

    # ---- images -> vectors -----------------------------------------------------------------

    def featurizer_for(self, backbone: BackboneSpec) -> Featurizer:
        """The backbone's model, loaded on first use (commands that never featurise never load
        it), and again when another backbone becomes active."""
        with self._featurizer_lock:
            if self._featurizer is None or self._featurizer_backbone != backbone.name:
                featurizer = self._featurizer_provider(backbone.name)
                if featurizer.dim != backbone.dim:
                    raise RuntimeError(
                        f"the {backbone.name} model gives {featurizer.dim} values per image, "
                        f"expected {backbone.dim}"
                    )
                self._check_producer(backbone, featurizer)
                self._featurizer, self._featurizer_backbone = featurizer, backbone.name
            return self._featurizer

    def _check_producer(self, backbone: BackboneSpec, featurizer: Featurizer) -> None:
        """Refuse (ModelUnavailableError, one line, the fixing command) a model whose weights
        differ from those that produced the catalogue's stored vectors: they would be compared
        with its queries. Records the weights and runtime when nothing is recorded yet (no
        vector yet, or stored before migration 0007: adopted once, with a warning)."""
        if self._weights is None:
            return
        runtime = producer_runtime(featurizer)
        with self.write_lock, self._sessions.begin() as session:
            row = repo.get_model(session, name=backbone.model_name)
            if row is None:
                return
            stored = repo.count_embeddings(session, model_name=row.name)
            if stored and row.weights is not None and row.weights != self._weights:
                raise ModelUnavailableError(
                    f"the catalogue's {stored} {row.name} vectors were made with weights "
                    f"{row.weights}, this process has {self._weights}: run `lookalike model "
                    "build` to featurise the catalogue again with these weights"
                )
            if stored and row.weights is None:
                log.warning(
                    "%s: %d vectors stored before their producer was recorded: adopted as "
                    "made with weights %s on %s",
                    row.name,
                    stored,
                    self._weights,
                    runtime,
                )
            if row.weights is None or not stored:
                row.weights, row.runtime = self._weights, runtime
            elif row.runtime != runtime:
                log.warning(
                    "%s: the catalogue's vectors come from %s, queries from %s (both passed the "
                    "fidelity gate); `lookalike model build` featurises the catalogue on %s",
                    row.name,
                    row.runtime,
                    runtime,
                    runtime,
                )

    def prepare(self, data: bytes, *, backbone: BackboneSpec | None = None) -> PreparedImage:
        """Check and preprocess one image for the active backbone (or `backbone`). Raises
        InvalidImageError with a one-line reason."""
        return self._preparer.prepare(data, backbone or self._active.backbone)

    def prepare_many(
        self,
        payloads: Iterable[tuple[str, bytes]],
        *,
        backbone: BackboneSpec | None = None,
        lookahead: int = 64,
    ) -> Iterator[tuple[str, PreparedImage | InvalidImageError]]:
        """`ImagePreparer.prepare_many` for the active backbone (or `backbone`)."""
        spec = backbone or self._active.backbone
        return self._preparer.prepare_many(payloads, spec, lookahead=lookahead)

    def embed(
        self,
        prepared: Sequence[PreparedImage],
        *,
        backbone: BackboneSpec | None = None,
        featurizer: Featurizer | None = None,
    ) -> np.ndarray:
        """Featurise prepared images in one batch with the active backbone (or `backbone`) on
        the loaded model (or `featurizer`: search/refeaturizing.py's new weights or runtime):
        (n, dim) float32, every value finite."""
        spec = backbone or self._active.backbone
        if not prepared:
            return np.zeros((0, spec.dim), dtype=np.float32)
        batch = np.stack([self._preparer.model_input(item, spec) for item in prepared])
        model = featurizer or self.featurizer_for(spec)
        vectors = model.embed(batch)  # (n, h, w, 3) -> (n, dim)
        if not np.isfinite(vectors).all():
            raise InvalidImageError("the image could not be analysed (non-finite features)")
        return vectors

    def warm_up(self) -> None:
        """Load the model and run it once, so the first customer does not wait for that."""
        height, width = self._active.backbone.input_size
        self.featurizer_for(self._active.backbone).embed(
            np.zeros((1, height, width, 3), dtype=np.float32)
        )

    def to_index_space(self, vector: np.ndarray) -> np.ndarray:
        """A raw (dim,) model vector -> the (dim,) float32 vector the index compares."""
        return self._active.post.transform(vector)

    # ---- the active model, its post-processing and its index -------------------------------

    def reload(self, *, refit: bool = False) -> None:
        """Rebuild the index from the database (at start, after another process switched the
        model or fitted the post-processing again)."""
        started = time.perf_counter()
        with self._sessions() as session:
            last_change = repo.last_change_id(session)  # read first: later changes re-apply
        model = self._prepare_active_model(refit=refit)
        index = self._live.build(model_name=model.name, dim=model.dim)
        with self.write_lock:
            self._live.current, self._active = index, model
            self._live.last_change = max(self._live.last_change, last_change)
        log.info(
            "index loaded (%s, %s): %d vectors of %d products in %.0f ms",
            model.name,
            type(index).__name__,
            len(index),
            index.product_count(active_only=False),
            (time.perf_counter() - started) * 1000,
        )
        self.fill_missing_vectors()

    def sync(self) -> int:
        """Apply catalogue changes committed by other processes since the last call (or this
        process's own: re-applying one is harmless). Returns how many changes were read."""
        with self._sessions() as session:
            changes = repo.changes_since(session, after_id=self._live.last_change)
        if not changes:
            return 0
        if any(product_id is None for _, product_id in changes):  # a model switch or a refit
            self.reload()
        else:
            with self.write_lock:
                self._live.refresh(
                    (pid for _, pid in changes if pid is not None), model_name=self._active.name
                )
        with self.write_lock:
            self._live.last_change = max(self._live.last_change, changes[-1][0])
        return len(changes)

    def fill_missing_vectors(self) -> int:
        """Compute the active model's vector of every image that lacks one: images another
        process added with the model it still thought active while a reindex switched to this
        one. Whichever process finds them first fills them in. Returns how many it filled."""
        model = self._active
        with self._sessions() as session:
            missing = [
                (image.id, image.file_name)
                for image in repo.images_missing_embedding(session, model_name=model.name)
            ]
        if not missing:
            return 0
        log.warning(
            "%d image(s) have no %s vector (added while the model was switched): computing them",
            len(missing),
            model.name,
        )
        filled = 0
        for image_id, file_name in missing:
            try:
                prepared = self.prepare(self._media.read(file_name), backbone=model.backbone)
            except (OSError, MediaStoreError, InvalidImageError) as exc:
                log.warning("image %d (%s) cannot be featurised: %s", image_id, file_name, exc)
                continue
            vector = self.embed([prepared], backbone=model.backbone)[0]  # (dim,)
            with self.write_lock, self._sessions() as session:
                image = session.get(ProductImage, image_id)
                if image is None:  # deleted meanwhile
                    continue
                repo.store_embedding(
                    session,
                    image_id=image_id,
                    model_name=model.name,
                    vector=vector,
                    index_vector=model.post.transform(vector),
                )
                repo.log_change(session, product_id=image.product_id)
                # Not `sessions.begin()`: the IntegrityError at the commit is how a lost race
                # shows, and the index is refreshed only after a commit that went through.
                try:
                    session.commit()
                except IntegrityError:  # another process filled it in first
                    continue
                self._live.refresh([image.product_id], model_name=model.name)
            filled += 1
        return filled

    def refit(self) -> None:
        """Fit the post-processing again on the whole catalogue, and reload."""
        self.reload(refit=True)

    def refit_if_due(self) -> bool:
        """Fit again when the catalogue has doubled since the last fit (see MIN_FIT_VECTORS)."""
        with self._sessions() as session:
            count = repo.count_embeddings(session, model_name=self._active.name)
        if not self._refit_due(self._active.post, count):
            return False
        self.reload(refit=True)
        return True

    def fit_postprocess(self, session: Session, row: SearchModel) -> PostProcessor:
        """Fit the post-processing on the model's raw vectors, rewrite every index vector
        and store the fit, in the caller's transaction."""
        ids, raw = repo.raw_vectors(session, model_name=row.name, dim=row.dim)  # (n,), (n, dim)
        if self._postprocess == "none":
            post = PostProcessor()
        elif ids.size >= MIN_FIT_VECTORS:
            post = PostProcessor.fit(raw, power=0.5, centre=True)
        else:  # too few photos for a meaningful mean: square root and normalisation only
            post = PostProcessor(power=0.5, normalize=True, dim=row.dim)
        repo.set_index_vectors(session, embedding_ids=ids.tolist(), vectors=post.transform(raw))
        row.postprocess = post.to_json()
        repo.log_change(session, product_id=None)
        log.info(
            "post-processing of %s fitted on %d vectors (%s)", row.name, ids.size, self._postprocess
        )
        return post

    def _prepare_active_model(self, *, refit: bool = False) -> ActiveModel:
        """The active model with its post-processing fitted and every index vector computed
        (a new database, one migrated from before 0003, a changed POSTPROCESS setting, or a
        catalogue that has doubled since the last fit)."""
        with self.write_lock, self._sessions.begin() as session:
            row = repo.active_model(session)
            if row is None:
                raise CatalogError("no active model in the database; run `lookalike db upgrade`")
            spec = get_backbone(row.backbone)
            post = PostProcessor.from_json(row.postprocess) if row.postprocess else None
            count = repo.count_embeddings(session, model_name=row.name)
            if refit or post is None or self._refit_due(post, count):
                post = self.fit_postprocess(session, row)
            else:
                ids, raw = repo.raw_vectors(
                    session, model_name=row.name, dim=row.dim, missing_index_only=True
                )
                if ids.size:  # rows stored by a process that died before writing them
                    repo.set_index_vectors(
                        session, embedding_ids=ids.tolist(), vectors=post.transform(raw)
                    )
            return ActiveModel(name=row.name, backbone=spec, post=post)

    def _refit_due(self, post: PostProcessor | None, count: int) -> bool:
        """Whether the stored fit must be replaced: none yet, another kind than the setting
        asks for, or fitted on less than half of the `count` vectors there are now."""
        if post is None or not postprocess_matches(post, self._postprocess):
            return True
        return (
            self._postprocess != "none"
            and count >= MIN_FIT_VECTORS
            and count >= 2 * max(post.fitted_on, MIN_FIT_VECTORS // 2)
        )
