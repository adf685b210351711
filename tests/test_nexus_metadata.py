"""Reading a finished file: NeXus metadata, paths, stat and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402


def text(group: h5py.Group, name: str, value: str) -> None:
    group.create_dataset(name, data=value.encode(), dtype=h5py.string_dtype("utf-8"))


def nx_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


@pytest.fixture
def ess_file(tmp_path) -> Path:
    """A file laid out like the real ESS ones: bytes strings, NX_class, NXuser groups, big arrays."""
    path = tmp_path / "ymir_876380_00011465.hdf"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        for name, value in {"title": "lego test 1", "experiment_identifier": "876380",
                            "experiment_description": "YMIR DAQ", "entry_identifier": "11465",
                            "entry_identifier_uuid": "90d87f9a-950f", "start_time": "2024-10-28T09:32:35.895Z",
                            "end_time": "2024-10-28T09:34:50.524Z", "definition": "NXtomo"}.items():
            text(entry, name, value)
        instrument = nx_group(entry, "instrument", "NXinstrument")
        text(instrument, "name", "YMIR")
        text(nx_group(entry, "sample", "NXsample"), "name", "some sample")
        for name, email in (("Anders Pettersson", ""), ("Lise Meitner", "lise@example.org")):
            user = nx_group(entry, "user_" + name.replace(" ", ""), "NXuser")
            text(user, "name", name)
            text(user, "email", email)
            text(user, "affiliation", "ESS")
        text(nx_group(entry, "not_a_user", "NXcite"), "name", "a citation")
        detector = nx_group(instrument, "detector", "NXevent_data")
        detector.create_dataset("event_id", data=np.zeros(10_000_000, dtype=np.uint32), chunks=True,
                                compression="gzip")
    return path


def test_every_entry_value_is_read_and_decoded(ess_file):
    metadata = si.read_nexus_metadata(str(ess_file))
    assert {k: v.value for k, v in metadata.values.items()} == {
        "title": "lego test 1", "experiment_identifier": "876380", "experiment_description": "YMIR DAQ",
        "entry_identifier": "11465", "entry_identifier_uuid": "90d87f9a-950f",
        "start_time": "2024-10-28T09:32:35.895Z", "end_time": "2024-10-28T09:34:50.524Z",
        "definition": "NXtomo", "instrument_name": "YMIR", "sample_name": "some sample",
    }


def test_users_are_the_nxuser_groups_only(ess_file):
    users = si.read_nexus_metadata(str(ess_file)).users
    assert [(u.name, u.email, u.affiliation) for u in users] == [
        ("Anders Pettersson", "", "ESS"), ("Lise Meitner", "lise@example.org", "ESS")]


def test_units_and_numbers_come_out_as_plain_json_values(tmp_path):
    path = tmp_path / "numbers.hdf"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        entry["entry_identifier"] = np.int64(42)
        entry["title"] = np.array([b"one element"])
        sample = nx_group(entry, "sample", "NXsample")
        sample["name"] = np.float32(1.5)
        sample["name"].attrs["units"] = b"K"
    values = si.read_nexus_metadata(str(path)).values
    assert values["entry_identifier"].value == 42 and type(values["entry_identifier"].value) is int
    assert values["title"].value == "one element"
    assert values["sample_name"] == si.NexusValue(1.5, "K")
    json.dumps({k: v.value for k, v in values.items()})


def test_an_array_where_a_value_should_be_is_not_dumped(tmp_path):
    path = tmp_path / "array.hdf"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        entry["title"] = np.array([b"a", b"b", b"c", b"d", b"e"])
    assert "title" not in si.read_nexus_metadata(str(path)).values


def test_data_arrays_are_never_read(ess_file, monkeypatch):
    """10 million events sit in the file; reading its metadata must not touch them."""
    read = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        read.append((self.name, self.size))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    si.read_nexus_metadata(str(ess_file))
    assert read and all(size == 1 for _, size in read), read


def test_an_entry_with_another_name_is_found_by_its_class(tmp_path):
    path = tmp_path / "raw.hdf"
    with h5py.File(path, "w") as f:
        text(nx_group(f, "raw_data_1", "NXentry"), "title", "found")
    assert si.read_nexus_metadata(str(path)).values["title"].value == "found"


def test_a_file_without_an_entry_is_refused(tmp_path):
    path = tmp_path / "empty.hdf"
    h5py.File(path, "w").close()
    with pytest.raises(si.FileRefused, match="no NXentry"):
        si.read_nexus_metadata(str(path))


def test_a_missing_file_is_not_ready_yet(tmp_path):
    with pytest.raises(si.FileNotReady, match="no such file"):
        si.read_nexus_metadata(str(tmp_path / "later.hdf"))


def test_a_file_that_is_not_hdf5_says_so(tmp_path):
    path = tmp_path / "notes.hdf"
    path.write_text("just text")
    with pytest.raises(si.FileRefused, match="HDF5"):
        si.read_nexus_metadata(str(path))


# -- paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("writer_path, expected", [
    ("/writer/out/dream/f.hdf", "/mnt/data/dream/f.hdf"),
    ("/writer/out/deep/dream/f.hdf", "/mnt/deep/dream/f.hdf"),  # the longest prefix wins
    ("/writer/outside/f.hdf", "/writer/outside/f.hdf"),  # a prefix is a whole folder, not a string start
    ("/writer/out", "/mnt/data"),
    ("relative/f.hdf", "/mnt/relative/f.hdf"),
])
def test_path_map_rewrites_the_longest_matching_folder(writer_path, expected):
    path_map = {"/writer/out": "/mnt/data", "/writer/out/deep/": "/mnt/deep", "relative": "/mnt/relative"}
    assert si.map_path(writer_path, path_map) == expected


def test_allowed_roots(tmp_path):
    inside = tmp_path / "data" / "f.hdf"
    inside.parent.mkdir()
    inside.touch()
    assert si.check_allowed(str(inside), [str(tmp_path / "data")]) == str(inside)
    with pytest.raises(si.FileRefused, match="outside the allowed roots"):
        si.check_allowed(str(tmp_path / "f.hdf"), [str(tmp_path / "data")])
    with pytest.raises(si.FileRefused, match="files.path_map"):
        si.check_allowed("data/f.hdf", ["/"])


def test_a_symlink_cannot_escape_the_allowed_roots(tmp_path):
    secret = tmp_path / "secret.hdf"
    secret.touch()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.hdf").symlink_to(secret)
    with pytest.raises(si.FileRefused, match="outside"):
        si.check_allowed(str(tmp_path / "data" / "link.hdf"), [str(tmp_path / "data")])


# -- stat and checksums -----------------------------------------------------------------


def test_describe_file_gives_what_the_origdatablock_lists(tmp_path):
    path = tmp_path / "f.hdf"
    path.write_bytes(b"x" * 1234)
    os.chmod(path, 0o640)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    described = si.describe_file(str(path), "none")
    assert (described.size, described.mtime, described.perm) == (1234, 1_700_000_000, "-rw-r-----")
    assert isinstance(described.uid, str) and isinstance(described.gid, str)
    assert described.checksum == "" and described.checksum_algorithm == ""


@pytest.mark.parametrize("algorithm", ["md5", "sha256", "blake2b"])
def test_checksums_match_hashlib_also_beyond_one_chunk(tmp_path, algorithm):
    content = os.urandom(si.CHECKSUM_CHUNK_BYTES + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    described = si.describe_file(str(path), algorithm)
    assert described.checksum == hashlib.new(algorithm, content).hexdigest()
    assert described.checksum_algorithm == algorithm


def test_describing_a_missing_file_is_not_ready_yet(tmp_path):
    with pytest.raises(si.FileNotReady):
        si.describe_file(str(tmp_path / "nope.hdf"), "none")



# -- scientific metadata by configuration ----------------------------------------------


@pytest.fixture
def awkward_file(tmp_path) -> Path:
    """Nested groups, arrays, bytes, units in bytes and str, NaN, and names SciCat would choke on."""
    path = tmp_path / "awkward.hdf"
    with h5py.File(path, "w") as f:
        entry = nx_group(f, "entry", "NXentry")
        entry["title"] = np.bytes_(b"Lego test")
        text(entry, "notes", "a very long note that goes on and on")
        entry["matrix"] = np.arange(6, dtype=np.int16).reshape(2, 3)
        entry["empty"] = np.zeros(0)
        entry["elsewhere"] = h5py.ExternalLink("not_there.hdf", "/entry")  # a "**" walks past it
        sample = nx_group(entry, "sample", "NXsample")
        text(sample, "name", "Søren's sample")
        sample["temperature"] = np.float32(4.5)
        sample["temperature"].attrs["units"] = b"K"
        sample["mass.total"] = np.float64(1.25)
        sample["mass.total"].attrs["units"] = "g"
        sample["$weird"] = np.int64(7)
        sample["nan_value"] = np.float64("nan")
        instrument = nx_group(entry, "instrument", "NXinstrument")
        detector = nx_group(instrument, "detector_1", "NXdetector")
        detector["distance"] = np.float64(2.5)
        detector["distance"].attrs["units"] = "m"
        detector["events"] = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.uint32)
        detector["pixel_names"] = np.array([b"left", b"middle", b"right"])
        nx_group(detector, "temperature_log", "NXlog")["value"] = np.array([290.0, 291.5])
        speed = nx_group(nx_group(instrument, "chopper", "NXdisk_chopper"), "speed", "NXlog")
        speed["value"] = np.array([14.0, np.nan, 14.25, 13.75])
        speed["value"].attrs["units"] = "Hz"
    return path


AWKWARD_RULES = [
    si.NexusValueRule("/entry/title"),
    si.NexusValueRule("/entry/sample/*"),
    si.NexusValueRule("/entry/instrument/**/value", key="log"),
    si.NexusValueRule("/**/distance", key="detector_distance"),
    si.NexusValueRule("/entry/instrument/detector_1/[ep]*"),
    si.NexusValueRule("/entry/notes", key="note.long"),
    si.NexusValueRule("/entry/matrix"),
    si.NexusValueRule("/entry/empty"),
    si.NexusValueRule("/entry/not_there"),
    si.NexusValueRule("/entry/instrument"),  # a group, not a value: nothing
]


def test_configured_extraction_gives_exactly_this_scientific_metadata(awkward_file):
    nexus = si.NexusMetadata(science=si.read_scientific_metadata(str(awkward_file), AWKWARD_RULES, 12))
    data_file = si.DataFile(path=str(awkward_file), size=1, mtime=0, uid="u", gid="g", perm="-rw-r--r--")
    defaults = si.DatasetDefaults(ownable=si.Ownable("ess"), contact_email="dm@example.org",
                                  fields={"creationLocation": "/X"})
    science = si.build_dataset(None, si.FinishedWriting(job_id="job-9", file_name=str(awkward_file)), nexus,
                               data_file, defaults).dataset["scientificMetadata"]
    assert science == {
        "title": {"value": "Lego test", "unit": ""},
        "sample_name": {"value": "Søren's sam…", "unit": ""},  # cut to 12 characters
        "sample_temperature": {"value": 4.5, "unit": "K"},
        "sample_mass_total": {"value": 1.25, "unit": "g"},
        "sample__weird": {"value": 7, "unit": ""},
        "sample_nan_value": {"value": None, "unit": ""},
        "log_instrument_chopper_speed_value": {
            "value": {"shape": [4], "dtype": "float64", "first": 14.0, "last": 13.75, "min": 13.75, "max": 14.25},
            "unit": "Hz"},
        "log_instrument_detector_1_temperature_log_value": {
            "value": {"shape": [2], "dtype": "float64", "first": 290.0, "last": 291.5, "min": 290.0, "max": 291.5},
            "unit": ""},
        "detector_distance": {"value": 2.5, "unit": "m"},
        "instrument_detector_1_events": {
            "value": {"shape": [8], "dtype": "uint32", "first": 3, "last": 6, "min": 1, "max": 9}, "unit": ""},
        "instrument_detector_1_pixel_names": {
            "value": {"shape": [3], "dtype": "string", "first": "left", "last": "right"}, "unit": ""},
        "note_long": {"value": "a very long…", "unit": ""},
        "matrix": {"value": {"shape": [2, 3], "dtype": "int16", "first": 0, "last": 5, "min": 0, "max": 5},
                   "unit": ""},
        "empty": {"value": {"shape": [0], "dtype": "float64"}, "unit": ""},
        "job_id": {"value": "job-9", "unit": ""},
    }
    # What SciCat stores without a 500: plain JSON (no NaN), no '.' or '$' in any key.
    json.dumps(science, allow_nan=False)


def test_a_large_array_is_summarised_without_reading_it(awkward_file, monkeypatch):
    monkeypatch.setattr(si, "ARRAY_STATISTICS_MAX_ELEMENTS", 4)
    read = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        read.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    rules = [si.NexusValueRule("/entry/instrument/detector_1/events")]
    [value] = si.read_scientific_metadata(str(awkward_file), rules, 100).values()
    assert value.value == {"shape": [8], "dtype": "uint32", "first": 3, "last": 6}  # no min, max
    assert read == [("/entry/instrument/detector_1/events", (0,)), ("/entry/instrument/detector_1/events", (7,))]


def test_the_default_extraction_takes_what_ess_files_carry(ess_file):
    science = si.read_scientific_metadata(str(ess_file), si.ESS_SCIENTIFIC_METADATA, 1000)
    assert {k: v.value for k, v in science.items()} == {
        "title": "lego test 1", "experiment_identifier": "876380", "experiment_description": "YMIR DAQ",
        "entry_identifier": "11465", "entry_identifier_uuid": "90d87f9a-950f",
        "start_time": "2024-10-28T09:32:35.895Z", "end_time": "2024-10-28T09:34:50.524Z",
        "definition": "NXtomo", "instrument_name": "YMIR", "sample_name": "some sample",
        "user_AndersPettersson_name": "Anders Pettersson", "user_LiseMeitner_name": "Lise Meitner",
    }


def test_a_value_that_cannot_be_read_is_left_out_not_the_file(awkward_file, monkeypatch, caplog):
    """Real files carry arrays compressed with filters (bitshuffle, LZ4) a host may lack."""
    original = h5py.Dataset.__getitem__

    def without_the_filter(self, key):
        if self.name == "/entry/instrument/detector_1/events":
            raise OSError("Can't read data (required filter 'bitshuffle; see https://github.com/kiyo-masui/bitshuffle' "
                          "is not registered)")
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", without_the_filter)
    science = si.read_scientific_metadata(str(awkward_file), AWKWARD_RULES, 100)
    assert "instrument_detector_1_events" not in science
    assert science["detector_distance"] == si.NexusValue(2.5, "m")
    assert "cannot read /entry/instrument/detector_1/events" in caplog.text


def test_a_last_double_star_takes_every_value_below(awkward_file):
    science = si.read_scientific_metadata(str(awkward_file), [si.NexusValueRule("/entry/instrument/**")], 100)
    assert sorted(science) == ["instrument_chopper_speed_value", "instrument_detector_1_distance",
                               "instrument_detector_1_events", "instrument_detector_1_pixel_names",
                               "instrument_detector_1_temperature_log_value"]
