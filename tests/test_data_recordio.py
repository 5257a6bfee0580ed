"""RecordIO (.rec/.idx) conversion against an independent writer written here.

The writer follows the MXNet RecordIO format description, not the package's
reader: chunk = magic, (cflag << 29) | length, payload, zero pad to 4; a payload is split
at every 4-byte-aligned occurrence of the magic word, the magic itself is dropped, parts are
flagged 1 (first), 2 (middle), 3 (last).
"""

import struct

import numpy as np
import pytest
import tensorflow as tf
from test_data_helpers import encode, noise_image

from keras_arcface.data import DataError, convert_recordio, make_dataset, read_manifest
from keras_arcface.data.recordio import RecordIOReader

MAGIC = 0xCED7230A


def chunk(cflag, data):
    pad = (4 - len(data) % 4) % 4
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\x00" * pad


def write_record(handle, payload):
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i : i + 4] == magic]
    if not cuts:
        handle.write(chunk(0, payload))
        return
    start, pieces = 0, []
    for cut in cuts:
        pieces.append(payload[start:cut])
        start = cut + 4
    pieces.append(payload[start:])
    for index, piece in enumerate(pieces):
        flag = 1 if index == 0 else (3 if index == len(pieces) - 1 else 2)
        handle.write(chunk(flag, piece))


def pack(label, image, id_=0):
    """An IRHeader payload; a list label becomes flag = len(labels) float32 values."""
    if isinstance(label, list):
        header = struct.pack("<IfQQ", len(label), 0.0, id_, 0)
        return header + np.asarray(label, "<f4").tobytes() + image
    return struct.pack("<IfQQ", 0, float(label), id_, 0) + image


def write_rec(prefix, records):
    """records: list of (key, payload); writes prefix.rec and prefix.idx."""
    with open(f"{prefix}.rec", "wb") as rec, open(f"{prefix}.idx", "w") as idx:
        for key, payload in records:
            idx.write(f"{key}\t{rec.tell()}\n")
            write_record(rec, payload)


def aligned_magic_png(seed):
    """A PNG whose bytes hold the magic word at a 4-aligned offset of the record payload
    (24-byte header in front), inside a private ancillary chunk that decoders skip."""
    import zlib

    data = encode(noise_image(seed), "PNG")
    for pad in range(4):
        body = b"\x00" * pad + struct.pack("<I", MAGIC) + b"\x00" * 4
        extra = struct.pack(">I", len(body)) + b"ruNk" + body
        extra += struct.pack(">I", zlib.crc32(b"ruNk" + body) & 0xFFFFFFFF)
        png = data[:33] + extra + data[33:]
        if (24 + png.index(struct.pack("<I", MAGIC))) % 4 == 0:
            return png
    raise AssertionError("no alignment found")


@pytest.fixture
def insightface_rec(tmp_path):
    """Header at key 0 (flag 2, [a, b]), images 1..a-1, identity ranges a..b-1, property."""
    images = {
        1: (0, noise_image(1)),
        2: (0, noise_image(2)),
        3: (1, noise_image(3)),
        4: (2, noise_image(4)),
        5: (2, noise_image(5)),
    }
    records = []
    for key, (label, image) in images.items():
        data = aligned_magic_png(key) if key == 3 else encode(image, "PNG")
        images[key] = (label, np.asarray(tf.io.decode_png(data)).copy())
        # Key 4 carries an array label (flag 2: label and a second value).
        records.append((key, pack([float(label), 7.0] if key == 4 else label, data, key)))
    header = (0, pack([6.0, 9.0], b""))
    ranges = [(6, pack([1.0, 3.0], b"")), (7, pack([3.0, 4.0], b"")), (8, pack([4.0, 6.0], b""))]
    prefix = tmp_path / "train"
    write_rec(prefix, [header] + records + ranges)
    (tmp_path / "property").write_text("3,112,112\n")
    return prefix, images


def test_independent_writer_really_splits_the_magic_record(insightface_rec):
    prefix, _ = insightface_rec
    raw = open(f"{prefix}.rec", "rb").read()
    flags = []
    offset = 0
    while offset < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, offset)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        offset += 8 + (((lrec & ((1 << 29) - 1)) + 3) & ~3)
    assert 1 in flags and 3 in flags  # the test file holds a multi-part record


def test_insightface_layout_converts_with_counts_and_labels(insightface_rec, tmp_path):
    prefix, images = insightface_rec
    with RecordIOReader(prefix) as reader:
        keys, header = reader.layout()
    assert keys == [1, 2, 3, 4, 5] and header == (6, 9)
    out = tmp_path / "out"
    manifest = convert_recordio(prefix, out, progress=False, num_shards=2)
    assert manifest["num_images"] == 5 and manifest["num_classes"] == 3
    assert manifest["source"]["layout"] == "insightface"
    got = {}
    for x, y in make_dataset(out, 1, training=False):
        got[x.numpy()[0].astype(np.uint8).tobytes()] = int(y.numpy()[0])
    assert got == {image.tobytes(): label for label, image in images.values()}


def test_im2rec_layout_uses_every_key(tmp_path):
    labels = [4, 0, 2, 4]
    records = [
        (key, pack(label, encode(noise_image(10 + key), "PNG"))) for key, label in enumerate(labels)
    ]
    write_rec(tmp_path / "data", records)  # no header record, no property file
    manifest = convert_recordio(tmp_path / "data", tmp_path / "out", progress=False)
    assert manifest["source"]["layout"] == "im2rec"
    assert manifest["num_images"] == 4 and manifest["num_classes"] == 5  # largest label + 1
    _, got = zip(*make_dataset(tmp_path / "out", 4, training=False))
    assert sorted(got[0].numpy().tolist()) == sorted(labels)


def test_label_outside_property_range(tmp_path):
    records = [
        (0, pack(0, encode(noise_image(0), "PNG"))),
        (1, pack(3, encode(noise_image(1), "PNG"))),
    ]
    write_rec(tmp_path / "data", records)
    (tmp_path / "property").write_text("3,112,112")
    with pytest.raises(DataError, match="label out of range"):
        convert_recordio(tmp_path / "data", tmp_path / "out", progress=False)
    manifest = convert_recordio(
        tmp_path / "data", tmp_path / "out", progress=False, on_error="skip"
    )
    assert manifest["num_images"] == 1
    assert manifest["skipped"]["by_reason"] == {"label out of range": 1}


def test_truncated_and_corrupt_records(tmp_path):
    records = [(k, pack(0, encode(noise_image(k), "PNG"))) for k in range(3)]
    write_rec(tmp_path / "data", records)
    raw = bytearray(open(tmp_path / "data.rec", "rb").read())
    offsets = [int(line.split("\t")[1]) for line in open(tmp_path / "data.idx")]
    raw[offsets[1] + 8 + 40 : offsets[1] + 8 + 400] = b"\x00" * 360  # corrupt image bytes
    open(tmp_path / "data.rec", "wb").write(bytes(raw[: offsets[2] + 100]))  # truncate last
    manifest = convert_recordio(
        tmp_path / "data", tmp_path / "out", progress=False, on_error="skip", num_classes=1
    )
    assert manifest["num_images"] == 1
    assert manifest["skipped"]["by_reason"] == {"corrupt image": 1, "truncated record": 1}
    with pytest.raises(DataError, match="corrupt image"):
        convert_recordio(tmp_path / "data", tmp_path / "out2", progress=False, num_classes=1)
    assert not (tmp_path / "out2").exists()  # nothing half-written looks complete


def test_float_labels_must_be_exact_integers(tmp_path):
    write_rec(tmp_path / "data", [(0, pack(1.5, encode(noise_image(0), "PNG")))])
    with pytest.raises(DataError, match="bad label"):
        convert_recordio(tmp_path / "data", tmp_path / "out", progress=False, num_classes=3)


def test_convert_rec_command(insightface_rec, tmp_path, capsys):
    from keras_arcface.cli import main as cli_main

    prefix, _ = insightface_rec
    code = cli_main(["convert", "rec", str(prefix), str(tmp_path / "cli"), "--quiet"])
    assert code == 0
    assert "wrote 5 images of 3 identities" in capsys.readouterr().out
    assert read_manifest(tmp_path / "cli")["source"]["property"] == [3, 112, 112]


def test_a_damaged_header_is_refused_before_anything_is_allocated(tmp_path):
    # Issue 16, item 3: a header claiming [1e9, 1e9+5] allocated gigabytes before failing.
    import tracemalloc

    records = [(0, pack([1e9, 1e9 + 5], b""))]
    records += [(k, pack(0, encode(noise_image(k), "PNG"))) for k in (1, 2)]
    write_rec(tmp_path / "data", records)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"header record \(key 0\).*data.idx lists 3 keys"):
            convert_recordio(tmp_path / "data", tmp_path / "out", progress=False, num_classes=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # a list of 1e9 keys would take ~8 GB
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("label", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_labels_are_bad_records_that_skip_counts(tmp_path, label):
    records = [(0, pack(label, encode(noise_image(0), "PNG")))]
    records += [(1, pack(0, encode(noise_image(1), "PNG")))]
    write_rec(tmp_path / "data", records)
    with pytest.raises(DataError, match="bad label: key 0.*label (nan|inf|-inf)"):
        convert_recordio(tmp_path / "data", tmp_path / "out", progress=False, num_classes=1)
    manifest = convert_recordio(
        tmp_path / "data", tmp_path / "out", progress=False, num_classes=1, on_error="skip"
    )
    assert manifest["num_images"] == 1 and manifest["skipped"]["by_reason"] == {"bad label": 1}


def test_bad_idx_lines_and_offsets_are_named_and_counted(tmp_path):
    records = [(k, pack(0, encode(noise_image(k), "PNG"))) for k in range(3)]
    write_rec(tmp_path / "data", records)
    idx = (tmp_path / "data.idx").read_bytes().splitlines()
    size = (tmp_path / "data.rec").stat().st_size
    damaged = [
        idx[0],
        b"1\t-5",  # a negative offset
        b"\xff\xfe\t12",  # not UTF-8 at all
        b"2\t" + str(size + 100).encode(),  # beyond the end of the .rec
    ]
    (tmp_path / "data.idx").write_bytes(b"\n".join(damaged) + b"\n")
    with pytest.raises(DataError, match=r"bad index line: .*data.idx:2 .*'1\\t-5'"):
        convert_recordio(tmp_path / "data", tmp_path / "out", progress=False, num_classes=1)
    manifest = convert_recordio(
        tmp_path / "data", tmp_path / "out", progress=False, num_classes=1, on_error="skip"
    )
    assert manifest["num_images"] == 1
    assert manifest["skipped"]["by_reason"] == {"bad index line": 2, "corrupt index": 1}
    examples = manifest["skipped"]["examples"]
    assert examples["corrupt index"] == ["key 2"]
    assert [e.rsplit(":", 1)[1] for e in examples["bad index line"]] == ["2", "3"]
