"""Verification .bin files (both entry types, Python 2 style), the restricted unpickler,
LFW pairs.txt and .bin writing from pairs."""

import io
import os
import pickle
import subprocess

import numpy as np
import pytest
from PIL import Image
from test_data_helpers import encode, noise_image, smooth_image

from keras_arcface.data import DataError, UnsafePickleError, load_bin, read_pairs_txt, write_bin
from keras_arcface.data.pairs import PairList, make_pairs, pairs_from_folder, write_pairs_bin


def _pil_decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _images(count):
    return [noise_image(k) for k in range(count)]


def test_bytes_entries_written_by_plain_pickle(tmp_path):
    images = _images(4)
    bins = [encode(image, "PNG") for image in images]
    with open(tmp_path / "lfw.bin", "wb") as handle:
        pickle.dump((bins, [True, False]), handle, protocol=pickle.HIGHEST_PROTOCOL)
    result = load_bin(tmp_path / "lfw.bin")
    assert result.name == "lfw" and result.images.dtype == np.uint8
    assert np.array_equal(result.images, np.stack(images))
    assert result.issame.tolist() == [True, False]


@pytest.mark.parametrize("protocol", [2, 4])
def test_ndarray_entries_as_opencv_writes_them(tmp_path, protocol):
    images = [smooth_image(k) for k in range(4)]
    encoded = [encode(image, "JPEG", quality=90) for image in images]
    bins = [np.frombuffer(data, np.uint8).reshape(-1, 1) for data in encoded]  # (L, 1)
    with open(tmp_path / "cfp.bin", "wb") as handle:
        pickle.dump((bins, np.array([False, True])), handle, protocol=protocol)
    result = load_bin(tmp_path / "cfp.bin")
    expected = np.stack([_pil_decode(data) for data in encoded])
    assert np.array_equal(result.images, expected)
    assert result.issame.tolist() == [False, True]


def test_protocol_2_bytes_pickle_goes_through_latin1_codec(tmp_path):
    bins = [encode(image, "PNG") for image in _images(2)]
    data = pickle.dumps((bins, [True]), protocol=2)
    assert b"_codecs" in data  # Python 3 bytes under protocol 2 use _codecs.encode
    (tmp_path / "p2.bin").write_bytes(data)
    assert load_bin(tmp_path / "p2.bin").images.shape == (2, 112, 112, 3)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _SubprocessExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


@pytest.mark.parametrize("exploit", [_Exploit, _SubprocessExploit])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, exploit):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(([exploit(str(marker)), b"x"], [True]))
    (tmp_path / "evil.bin").write_bytes(payload)
    with pytest.raises(
        UnsafePickleError,
        match=r"Refused to load the global '(posix|os)\."
        r"system'|Refused to load the global 'subprocess\.call'",
    ):
        load_bin(tmp_path / "evil.bin")
    assert not marker.exists()
    # A plain pickle.load would have run it: the test's exploit is real.
    pickle.loads(payload)
    assert marker.exists()


def test_eval_global_is_refused(tmp_path):
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    (tmp_path / "eval.bin").write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_bin(tmp_path / "eval.bin")


def test_malformed_bins(tmp_path):
    (tmp_path / "odd.bin").write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(DataError, match="twice as many"):
        load_bin(tmp_path / "odd.bin")
    bad = [encode(noise_image(0), "PNG"), b"not an image"]
    (tmp_path / "corrupt.bin").write_bytes(pickle.dumps((bad, [True])))
    with pytest.raises(DataError, match="corrupt image"):
        load_bin(tmp_path / "corrupt.bin")
    small = [encode(noise_image(0, size=96), "PNG")] * 2
    (tmp_path / "small.bin").write_bytes(pickle.dumps((small, [True])))
    with pytest.raises(DataError, match="unexpected image size"):
        load_bin(tmp_path / "small.bin")
    assert load_bin(tmp_path / "small.bin", image_size=None).images.shape == (2, 96, 96, 3)


@pytest.mark.parametrize("entry_type", ["bytes", "ndarray"])
def test_write_bin_round_trip_and_plain_pickle_layout(tmp_path, entry_type):
    images = np.stack(_images(4))
    path = write_bin(
        tmp_path / "out.bin", images, [True, False], entry_type=entry_type, image_format="png"
    )
    with open(path, "rb") as handle:
        bins, issame = pickle.load(handle)  # our own file: trusted here
    assert len(bins) == 4 and list(issame) == [True, False]
    if entry_type == "ndarray":
        assert bins[0].dtype == np.uint8 and bins[0].shape[1] == 1
    assert np.array_equal(load_bin(path).images, images)
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_read_pairs_txt(tmp_path):
    for name, count in (("Ann_Lee", 2), ("Bo", 3)):
        os.makedirs(tmp_path / "lfw" / name)
        for index in range(1, count + 1):
            Image.fromarray(smooth_image(index)).save(
                tmp_path / "lfw" / name / f"{name}_{index:04d}.jpg"
            )
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo\t3\n")
    pairs = read_pairs_txt(tmp_path / "pairs.txt", tmp_path / "lfw")
    assert pairs.issame.tolist() == [True, False]
    assert [os.path.basename(p) for p in pairs.paths] == [
        "Ann_Lee_0001.jpg",
        "Ann_Lee_0002.jpg",
        "Ann_Lee_0002.jpg",
        "Bo_0003.jpg",
    ]
    path, report = write_pairs_bin(pairs, tmp_path / "lfw.bin")
    loaded = load_bin(path)
    assert loaded.issame.tolist() == [True, False] and report.total == 0
    assert np.array_equal(loaded.images[3], _pil_decode(open(pairs.paths[3], "rb").read()))
    (tmp_path / "bad.txt").write_text("Ann_Lee\t1\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_pairs_txt(tmp_path / "bad.txt", tmp_path / "lfw")
    (tmp_path / "missing.txt").write_text("Ann_Lee\t1\t9\n")
    with pytest.raises(FileNotFoundError, match="Ann_Lee_0009"):
        read_pairs_txt(tmp_path / "missing.txt", tmp_path / "lfw")


def test_make_pairs_is_balanced_distinct_and_deterministic():
    labels = np.repeat(np.arange(10), 4)
    pairs, issame = make_pairs(labels, 100, seed=3)
    assert len(pairs) == 100 and issame.sum() == 50
    assert np.all((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == issame)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == 100
    again, _ = make_pairs(labels, 100, seed=3)
    assert np.array_equal(pairs, again)
    # Each of the protocol's 10 contiguous folds holds both kinds.
    assert all(0 < issame[k * 10 : (k + 1) * 10].sum() < 10 for k in range(10))


def test_pairs_from_folder_to_bin_skips_bad_images(tmp_path):
    for person in range(3):
        os.makedirs(tmp_path / "faces" / f"p{person}")
        for k in range(3):
            Image.fromarray(noise_image(10 * person + k)).save(
                tmp_path / "faces" / f"p{person}" / f"{k}.png"
            )
    (tmp_path / "faces" / "p0" / "0.png").write_bytes(b"broken")
    pairs = pairs_from_folder(tmp_path / "faces", 12, seed=0)
    broken = sum(
        1
        for k in range(pairs.num_pairs)
        if str(tmp_path / "faces" / "p0" / "0.png") in pairs.paths[2 * k : 2 * k + 2]
    )
    with pytest.raises(DataError, match="corrupt image"):
        write_pairs_bin(pairs, tmp_path / "x.bin")
    path, report = write_pairs_bin(pairs, tmp_path / "x.bin", on_error="skip")
    assert report.total == broken > 0
    assert load_bin(path).num_pairs == pairs.num_pairs - broken


def test_sixteen_bit_images_are_scaled_in_bin_writing_and_reading(tmp_path):
    # By hand: round(v * 255 / 65535) for v = 0, 200, 32768, 65280 -> 0, 1, 128, 254.
    sixteen = np.zeros((4, 112, 112, 3), np.uint16)
    for k, value in enumerate((0, 200, 32768, 65280)):
        sixteen[k] = value
    write_bin(tmp_path / "raw16.bin", sixteen, [True, False], image_format="png")
    result = load_bin(tmp_path / "raw16.bin")
    assert [int(image.max()) for image in result.images] == [0, 1, 128, 254]
    assert [int(image.min()) for image in result.images] == [0, 1, 128, 254]
    # 16-bit grey PNG files through `convert bin` (pairs -> .bin) and a 16-bit entry in a .bin.
    folder = tmp_path / "faces" / "ann"
    folder.mkdir(parents=True)
    for k, value in enumerate((200, 32768)):
        Image.fromarray(np.full((112, 112), value, np.uint16)).save(folder / f"{k}.png")
    pairs = PairList([str(folder / "0.png"), str(folder / "1.png")], np.array([True]))
    path, _ = write_pairs_bin(pairs, tmp_path / "pairs.bin")
    assert [int(image.mean()) for image in load_bin(path).images] == [1, 128]
    buffer = io.BytesIO()
    Image.fromarray(np.full((112, 112), 65280, np.uint16)).save(buffer, format="PNG")
    with open(tmp_path / "entry16.bin", "wb") as handle:
        pickle.dump(([buffer.getvalue()] * 2, [True]), handle, protocol=4)
    assert load_bin(tmp_path / "entry16.bin").images.max() == 254


class _Allocates:
    """Pickles as a call of an allowed numpy global asking for a huge array."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_array_sizes_are_capped_to_what_the_file_can_hold(tmp_path):
    # Issue 16, item 6: numpy.ndarray((N,), dtype) from a 17 KB file allocated N bytes.
    import tracemalloc

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct
    cases = {
        "ndarray": _Allocates(np.ndarray, ((3_000_000_000,), np.dtype(np.uint8))),
        "reconstruct": _Allocates(reconstruct, (np.ndarray, (10**9,), b"b")),
    }
    for name, entry in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(pickle.dumps(([entry, entry], [True]), protocol=4))
        assert path.stat().st_size < 17_000
        tracemalloc.start()
        try:
            with pytest.raises(UnsafePickleError, match=r"asks for an array of \d+ bytes"):
                load_bin(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 50 * 2**20, name
    # Real arrays (OpenCV-style entries) still load: they hold their own bytes.
    encoded = np.frombuffer(encode(noise_image(0), "PNG"), np.uint8).reshape(-1, 1)
    (tmp_path / "ok.bin").write_bytes(pickle.dumps(([encoded, encoded], [True]), protocol=2))
    assert load_bin(tmp_path / "ok.bin").images.shape == (2, 112, 112, 3)


def test_issame_must_hold_booleans_and_at_least_one_pair(tmp_path):
    # Issue 16, item 7: "False" strings made every pair genuine (bool("False") is True).
    images = [encode(noise_image(k), "PNG") for k in range(4)]
    (tmp_path / "strings.bin").write_bytes(pickle.dumps((images, ["False", "True"])))
    with pytest.raises(DataError, match=r"strings.bin: issame\[0\] is 'False' \(str\)"):
        load_bin(tmp_path / "strings.bin")
    with pytest.raises(DataError, match=r"issame\[1\] is 'yes'"):
        write_bin(tmp_path / "out.bin", images, [True, "yes"])
    assert not (tmp_path / "out.bin").exists()
    (tmp_path / "bits.bin").write_bytes(pickle.dumps((images, [0, 1])))
    assert load_bin(tmp_path / "bits.bin").issame.tolist() == [False, True]
    (tmp_path / "empty.bin").write_bytes(pickle.dumps(([], [])))
    with pytest.raises(DataError, match="empty.bin holds no pairs"):
        load_bin(tmp_path / "empty.bin")
