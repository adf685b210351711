"""The picture of each dataset: which plot a file's thumbnail shows, how little of a large
array it reads, what it looks like, and the attachment request that carries it."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import scicat_ingestor as si
from ingestor_harness import producer

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "tests" / "data" / "scicat-exchanges.jsonl"
HOST = "https://scicat.example.org/api/v3"  # the attachment requests are paths below its v3 or v4 base
SETTINGS = si.ThumbnailConfig()


def nx_group(parent: h5py.Group, name: str, nx_class: str, **attrs) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    for key, value in attrs.items():
        group.attrs[key] = value
    return group


def nxdata(parent: h5py.Group, name: str, signal: np.ndarray, axes: dict[str, tuple[np.ndarray, str]] = (),
           **attrs) -> h5py.Group:
    group = nx_group(parent, name, "NXdata", signal="signal", **attrs)
    group.create_dataset("signal", data=signal)
    for axis, (values, units) in dict(axes).items():
        group.create_dataset(axis, data=values).attrs["units"] = units
    if axes:
        group.attrs["axes"] = list(dict(axes))
    return group


def picture(path: Path) -> si.ThumbnailOutcome:
    outcome = si.picture_of_file(str(path), SETTINGS)
    assert not outcome.problem, outcome.problem
    return outcome


def decoded(thumbnail: si.Thumbnail) -> Image.Image:
    uri = thumbnail.data_uri()
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG" and image.size == (SETTINGS.width, SETTINGS.height)
    return image.convert("RGB")


def plot_area(image: Image.Image, colour_scale: bool = True) -> np.ndarray:
    """The pixels inside the plot's frame (what the data drew); an image's colour scale is to its right."""
    painter = si.ThumbnailPainter(SETTINGS.width, SETTINGS.height, colour_scale)
    return np.asarray(image)[painter.top + 1:painter.bottom, painter.left + 1:painter.right]


# -- which plot -------------------------------------------------------------------------


def test_the_default_chain_from_the_root_wins_over_an_nxdata_found_first(tmp_path):
    path = tmp_path / "chain.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = nx_group(f, "entry", "NXentry", default="results")
        nxdata(entry, "aaa_first_by_name", np.arange(10.0))
        nxdata(entry, "results", np.arange(20.0) ** 2, {"energy": (np.linspace(1, 20, 20), "meV")})
    thumbnail = picture(path).thumbnail
    assert thumbnail.caption == "Default plot: /entry/results/signal"
    with h5py.File(path) as f:
        source = si.find_default_plot(f)
        assert [si._axis_label(a, "index") for a in source.axes] == ["energy (meV)"]


def test_without_default_attributes_the_first_nxdata_with_a_signal_is_plotted(tmp_path):
    path = tmp_path / "no-default.nxs"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        nx_group(entry, "a_empty", "NXdata")  # no signal: passed over, as ESS files have them
        nxdata(nx_group(entry, "b_instrument", "NXinstrument"), "detector_image", np.ones((4, 5)))
        nxdata(entry, "c_spectrum", np.arange(8.0))
    assert picture(path).thumbnail.caption == "Default plot: /entry/b_instrument/detector_image/signal"


def test_a_default_chain_that_breaks_falls_back_to_the_search(tmp_path):
    path = tmp_path / "broken-chain.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = nx_group(f, "entry", "NXentry", default="gone")
        nxdata(entry, "data", np.arange(8.0))
    assert picture(path).thumbnail.caption == "Default plot: /entry/data/signal"


@pytest.mark.parametrize("make", ["nothing", "empty_nxdata", "text_signal", "empty_signal"])
def test_a_file_with_nothing_plottable_gets_no_picture_and_no_problem(tmp_path, make):
    path = tmp_path / f"{make}.nxs"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        entry.create_dataset("title", data="a run")
        if make == "empty_nxdata":
            nx_group(entry, "data", "NXdata", signal="missing")
        elif make == "text_signal":
            nx_group(entry, "data", "NXdata", signal="title").create_dataset("title", data="text")
        elif make == "empty_signal":
            nx_group(entry, "data", "NXdata", signal="signal").create_dataset("signal", shape=(0,), dtype="f8")
    outcome = si.picture_of_file(str(path), SETTINGS)
    assert outcome.thumbnail is None and outcome.problem == ""


def test_chunks_larger_than_the_budget_are_a_problem_told_not_raised(tmp_path):
    path = tmp_path / "huge-chunks.nxs"
    with h5py.File(path, "w") as f:
        group = nx_group(nx_group(f, "entry", "NXentry"), "data", "NXdata", signal="signal")
        group.create_dataset("signal", data=np.ones((1024, 1024)), chunks=(1024, 1024))  # one 8 MiB chunk
    outcome = si.picture_of_file(str(path), si.ThumbnailConfig(max_read_mb=4))
    assert outcome.thumbnail is None and "thumbnail.max_read_mb" in outcome.problem
    assert si.picture_of_file(str(path), si.ThumbnailConfig(max_read_mb=8)).thumbnail is not None


def test_a_damaged_file_is_a_problem_told_not_raised(tmp_path):
    path = tmp_path / "not-hdf5.nxs"
    path.write_bytes(b"not an HDF5 file")
    outcome = si.picture_of_file(str(path), SETTINGS)
    assert outcome.thumbnail is None and "HDF5" in outcome.problem


# -- what it looks like -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
def test_a_1d_signal_is_a_line_plot_in_a_small_png(tmp_path, dtype):
    path = tmp_path / "spectrum.nxs"
    tof = np.linspace(1000, 71000, 7000)
    counts = (1000 * np.exp(-((tof - 30000) / 4000) ** 2)).astype(dtype)
    with h5py.File(path, "w") as f:
        nxdata(nx_group(f, "entry", "NXentry", default="spectrum"), "spectrum", counts, {"tof": (tof, "us")})
        f.attrs["default"] = "entry"
    thumbnail = picture(path).thumbnail
    area = plot_area(decoded(thumbnail), colour_scale=False)
    line = np.all(area == si.FRAME_COLOURS[si.LINE_INDEX - si.SCALE_COLOURS], axis=-1)
    assert line.any(axis=0).mean() > 0.9  # the line crosses the whole width
    # The peak is drawn high, near the middle; the tails low.
    peak_column = int(area.shape[1] * (30000 - 1000) / 70000)
    assert np.argmax(line[:, peak_column - 2:peak_column + 3].any(axis=1)) < area.shape[0] * 0.1
    assert line[-5:, :10].any()
    assert len(thumbnail.png) < 40_000


def test_a_2d_signal_is_an_image_with_a_colour_scale_its_first_index_upwards(tmp_path):
    path = tmp_path / "image.nxs"
    image = np.zeros((300, 400), dtype="uint32")
    image[250:, 300:] = 1000  # high rows and high columns: the top right once drawn
    with h5py.File(path, "w") as f:
        nxdata(nx_group(f, "entry", "NXentry"), "detector", image,
               {"y": (np.linspace(-15, 15, 300), "mm"), "x": (np.linspace(-20, 20, 400), "mm")})
    area = plot_area(decoded(picture(path).thumbnail))
    top_right, bottom_left = area[5, -5], area[-5, 5]
    assert tuple(top_right) == si.VIRIDIS_STOPS[-1] and tuple(bottom_left) == si.VIRIDIS_STOPS[0]
    scale = np.asarray(decoded(picture(path).thumbnail))[30:250, SETTINGS.width - 60]
    assert len({tuple(p) for p in scale}) > 100  # the colour scale beside it


def test_a_3d_signal_shows_its_middle_slice_and_says_so(tmp_path):
    path = tmp_path / "frames.nxs"
    frames = np.zeros((9, 64, 64), dtype="float32")
    frames[4, :32, :] = 5.0  # only the middle frame has anything in it
    with h5py.File(path, "w") as f:
        nxdata(nx_group(f, "entry", "NXentry"), "frames", frames)
    thumbnail = picture(path).thumbnail
    assert thumbnail.caption == "Default plot: /entry/frames/signal[4, :, :]"
    area = plot_area(decoded(thumbnail))
    assert tuple(area[-5, 5]) == si.VIRIDIS_STOPS[-1] and tuple(area[5, 5]) == si.VIRIDIS_STOPS[0]


def test_nans_are_grey_in_an_image_and_gaps_in_a_line_and_all_nan_still_draws(tmp_path):
    path = tmp_path / "nans.nxs"
    image = np.random.default_rng(1).random((100, 100))
    image[:, :50] = np.nan
    line = np.arange(100.0)
    line[40:60] = np.nan
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        nxdata(entry, "a_image", image)
        nxdata(entry, "b_line", line)
        nxdata(entry, "c_all_nan", np.full((10, 10), np.nan))
    with h5py.File(path) as f:
        for name, check in (("a_image", "grey"), ("b_line", "gap"), ("c_all_nan", "grey")):
            source = si.PlotSource(f[f"entry/{name}/signal"], [None] * f[f"entry/{name}/signal"].ndim)
            area = plot_area(decoded(si.draw_thumbnail(source, SETTINGS)), colour_scale=check == "grey")
            grey = np.all(area == si.FRAME_COLOURS[0], axis=-1)
            if check == "grey":
                assert grey[:, :10].all()
            else:
                drawn = np.all(area == si.FRAME_COLOURS[si.LINE_INDEX - si.SCALE_COLOURS], axis=-1).any(axis=0)
                assert not drawn[int(area.shape[1] * 0.45):int(area.shape[1] * 0.55)].any()
                assert drawn[3:int(area.shape[1] * 0.35)].all()


# -- bounded cost ------------------------------------------------------------------------


class CountingFile(io.FileIO):
    """The file h5py reads, recording where each read starts: which chunks were read."""

    def __init__(self, path: Path):
        super().__init__(path, "r")
        self.reads: list[tuple[int, int]] = []

    def readinto(self, buffer) -> int:
        start = self.tell()
        n = super().readinto(buffer)
        self.reads.append((start, n))
        return n


def test_a_2_gb_chunked_signal_is_read_within_max_read_mb(tmp_path):
    path = tmp_path / "two-gb.nxs"
    chunk = (512, 512)  # 1 MiB of float32 each
    size = producer.write_large_plot(str(path), (32768, 16384), chunk)
    assert size == 2 * 2**30 and path.stat().st_size < 20 * 2**20
    counting = CountingFile(path)
    with h5py.File(counting, "r") as f:
        signal = f["entry/data/signal"]
        chunk_offsets = {signal.id.get_chunk_info(i).byte_offset for i in range(signal.id.get_num_chunks())}
        assert len(chunk_offsets) == 2048
        counting.reads.clear()
        outcome = si.picture_of_file(str(path), SETTINGS, opened=f)
    assert outcome.thumbnail is not None, outcome.problem
    chunks_read = {start for start, _ in counting.reads} & chunk_offsets
    bytes_decompressed = len(chunks_read) * 512 * 512 * 4
    assert 0 < bytes_decompressed <= SETTINGS.max_read_mb * 2**20
    assert len(decoded(outcome.thumbnail).getcolors(256)) > 2  # the chunks' four values show


def test_the_selection_grows_its_strides_until_the_chunks_it_touches_fit():
    # Contiguous: the points asked for are all read, a byte each here.
    small = si.plot_selection((300, 400), None, 1, (300, 400), 2**20)
    assert small.key == (slice(0, 300, 1), slice(0, 400, 1)) and small.bytes_touched == 120_000
    # Chunked, 4 MiB chunks, 16 MiB allowed: at most four chunks touched.
    chunked = si.plot_selection((8192, 8192), (1024, 1024), 4, (250, 340), 16 * 2**20)
    assert chunked.bytes_touched <= 16 * 2**20
    assert all(s.step >= 1024 for s in chunked.key)
    # Leading dimensions: their middle.
    stack = si.plot_selection((10, 7, 300, 400), None, 2, (300, 400), 2**30)
    assert stack.key[:2] == (5, 3) and stack.note == "[5, 3, :, :]"
    with pytest.raises(si.ThumbnailTooCostly):
        si.plot_selection((4096, 4096), (4096, 4096), 8, (300, 400), 64 * 2**20)


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(st.integers(1, 10**6), min_size=1, max_size=4).filter(lambda s: math.prod(s) < 2**50),
       chunk_fraction=st.one_of(st.none(), st.floats(0.0001, 1.0)),
       itemsize=st.sampled_from([1, 2, 4, 8]), budget_mb=st.floats(0.01, 256))
def test_whatever_the_array_the_selection_stays_within_the_budget_or_says_it_cannot(shape, chunk_fraction,
                                                                                     itemsize, budget_mb):
    shape = tuple(shape)
    chunks = None if chunk_fraction is None else tuple(max(1, int(n * chunk_fraction)) for n in shape)
    points = (1600,) if len(shape) == 1 else (250, 340)
    budget = int(budget_mb * 2**20)
    try:
        selection = si.plot_selection(shape, chunks, itemsize, points, budget)
    except si.ThumbnailTooCostly:
        assert chunks is not None and math.prod(chunks) * itemsize > budget
        return
    assert selection.bytes_touched <= budget
    plotted = selection.key[len(shape) - len(points):]
    assert all(isinstance(s, slice) and s.step >= 1 for s in plotted)
    assert all(-(-n // s.step) <= p for n, s, p in zip(shape[-len(points):], plotted, points))


# -- the attachment request ---------------------------------------------------------------


def recorded(name: str) -> dict:
    return next(e for e in map(json.loads, RECORDING.read_text().splitlines()) if e["name"] == name)


@pytest.mark.parametrize("api,name", [("v3", "attachments.post.full"), ("v4", "v4.attachments.post.full")])
def test_the_attachment_post_has_the_shape_scicat_took_in_each_api_version(api, name):
    exchange = recorded(name)
    sent = exchange["request"]
    pid = "20.500.12269/rec-327bf622b99a-att" + ("-v4" if api == "v4" else "")
    thumbnail = si.Thumbnail(b"\x89PNG...", "Default plot: /entry/data/signal", 400, 300)
    call = si.attachment_post(si.DatasetApi.of(api, HOST, ""), pid, thumbnail, si.Ownable("rec-327bf622b99a-owners",
                                                             ["rec-327bf622b99a-readers"]))
    assert exchange["response"]["status"] == 201
    assert call.method == sent["method"] and "/api/" + api + call.path == sent["path"]
    assert sorted(call.body) == sorted(sent["json"])
    assert call.body["thumbnail"].startswith("data:image/png;base64,")
    if api == "v4":
        assert call.body["relationships"] == sent["json"]["relationships"]
        assert call.body["isPublished"] is False


@pytest.mark.parametrize("api,name", [("v3", "attachments.get.by_dataset_route_one"),
                                      ("v4", "v4.attachments.filter.target_and_type")])
def test_the_attachment_search_is_a_route_scicat_answered_with_a_list(api, name):
    exchange = recorded(name)
    call = si.attachment_search(si.DatasetApi.of(api, HOST, ""), "20.500.12269/rec-327bf622b99a-att")
    assert exchange["response"]["status"] == 200 and isinstance(exchange["response"]["body"], list)
    assert exchange["request"]["path"].split("?")[0] == "/api/" + api + call.path
    if api == "v4":
        where = json.loads(call.params["filter"])["where"]
        assert where == {"relationships.targetId": "20.500.12269/rec-327bf622b99a-att"}
