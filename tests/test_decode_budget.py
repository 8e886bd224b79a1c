"""The decoding budget (search.featurize.images): at most the largest accepted image's pixels
decode at once over every thread, so four 64 MP photos sent together take one image's memory at
a time, not four (issue 22, item 9)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from search.featurize.backbones import get_backbone
from search.featurize.images import DecodeBudget, ImagePreparer
from tests import images

# How long a thread that should be kept waiting is watched before we say it waited: an
# absence can only be observed for a while. A budget that lets it through does so at once.
KEPT_OUT_SECONDS = 0.3


def test_a_second_decode_waits_while_the_budget_is_spent() -> None:
    budget = DecodeBudget(100)
    entered = threading.Event()

    def second() -> None:
        with budget.hold(30):
            entered.set()

    with budget.hold(80):
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not entered.wait(KEPT_OUT_SECONDS), "80 + 30 pixels decoded against 100"
    assert entered.wait(10)
    waiter.join()
    assert budget.in_use == 0 and budget.peak == 80


def test_an_image_over_the_budget_decodes_alone() -> None:
    budget = DecodeBudget(100)
    with budget.hold(250):  # never waits for a budget it can never fit in
        assert budget.in_use == 250
    with budget.hold(60), budget.hold(40):  # both fit: no wait
        assert budget.in_use == 100


def test_images_prepared_together_stay_within_the_budget() -> None:
    """Four 200x200 photos from four threads against a budget of two of them."""
    preparer = ImagePreparer(max_pixels=2 * 200 * 200, max_bytes=10**6)
    photos = [images.encode(images.photo_like(200, 200, seed=seed), "PNG") for seed in range(4)]
    vgg16 = get_backbone("vgg16")
    with ThreadPoolExecutor(4) as pool:
        prepared = list(pool.map(lambda data: preparer.prepare(data, vgg16), photos))
    assert [p.width for p in prepared] == [200] * 4
    assert 200 * 200 <= preparer.decoding.peak <= 2 * 200 * 200
    assert preparer.decoding.in_use == 0
