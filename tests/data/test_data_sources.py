"""Sources: TFDS (through tfds.testing.mock_data), image folders (JPEG/PNG with Pillow), CSV
tables, text files with char / byte / word vocabularies; and their bad input."""

import numpy as np
import pytest
from PIL import Image

from jaxdl.data import CharVocab, ImageFolder, Pipeline, load_dataset
from jaxdl.data.loaders.folder import decode_image, list_image_folder
from jaxdl.errors import JaxdlError

# ---- image folders ------------------------------------------------------------------------------


def _write_folder(root, per_class=6, classes=("cat", "dog"), size=(12, 10), gray_every=0):
    """One sub-folder per class; class c's images are filled with the value 40 * (c + 1)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((*size, 3), 40 * (c + 1), np.uint8)
            arr[0, 0] = rng.integers(0, 255, 3)
            if gray_every and i % gray_every == 0:
                Image.fromarray(arr[..., 0], "L").save(root / name / f"{i}.png")
            elif i % 2:
                Image.fromarray(arr).save(root / name / f"{i}.png")
            else:
                Image.fromarray(arr).save(root / name / f"{i}.jpg", quality=95)
    return root


def test_image_folder_decodes_resizes_and_splits(tmp_path):
    root = _write_folder(tmp_path / "pets", per_class=10)
    s = load_dataset(f"folder:{root},size=8x6", seed=0, val_fraction=0.2, test_fraction=0.2)
    assert s.class_names == ["cat", "dog"] and s.num_classes == 2 and s.input_shape == (8, 6, 3)
    assert (len(s.train), len(s.val), len(s.test)) == (12, 4, 4)
    for part in (s.train, s.val, s.test):  # stratified
        assert sorted(np.bincount(part.y).tolist()) == [len(part) // 2] * 2
    ex = s.train[0]
    assert ex["x"].shape == (8, 6, 3) and ex["x"].dtype == np.float32
    # the fill value of its class survives JPEG/PNG and the resize (away from the noisy corner)
    assert ex["x"][4, 3, 0] == pytest.approx(40 * (ex["y"] + 1) / 255, abs=3 / 255)
    b = next(iter(Pipeline(s.train, 4, seed=1)))
    assert b["x"].shape == (4, 8, 6, 3) and b["y"].dtype == np.int32
    # same seed, same split of the same files
    again = load_dataset(f"folder:{root},size=8x6", seed=0, val_fraction=0.2, test_fraction=0.2)
    assert again.test.files == s.test.files


def test_image_folder_train_test_layout(tmp_path):
    _write_folder(tmp_path / "d" / "train", per_class=5)
    _write_folder(tmp_path / "d" / "test", per_class=2)
    s = load_dataset(f"folder:{tmp_path / 'd'},size=4", val_fraction=0.2)
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 4) and s.input_shape == (4, 4, 3)
    _write_folder(tmp_path / "e" / "train", classes=("a", "b"))
    _write_folder(tmp_path / "e" / "test", classes=("a", "c"))
    with pytest.raises(JaxdlError, match=r"test has classes \['a', 'c'\]"):
        load_dataset(f"folder:{tmp_path / 'e'}")


def test_grayscale_images_where_rgb_is_expected_are_converted(tmp_path):
    """Documented behaviour (as Keras): color_mode 'rgb' repeats a grayscale file's channel;
    'grayscale' converts colour files to luminance."""
    root = _write_folder(tmp_path / "g", per_class=4, gray_every=2)
    files, labels, _ = list_image_folder(root)
    gray = [f for f in files if Image.open(f).mode == "L"]
    assert gray
    x = decode_image(gray[0], size=(12, 10), color_mode="rgb")
    assert x.shape == (12, 10, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    s = load_dataset(
        f"folder:{root},size=12x10,color=grayscale", test_fraction=0.25, val_fraction=0.0
    )
    assert s.input_shape == (12, 10, 1) and s.train[0]["x"].shape == (12, 10, 1)
    with pytest.raises(JaxdlError, match="unknown color_mode 'rbg'"):
        ImageFolder(files, labels, color_mode="rbg")


def test_corrupt_images_raise_or_are_skipped_and_counted(tmp_path):
    root = _write_folder(tmp_path / "c", per_class=5)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dog" / "empty.png").write_bytes(b"")
    files, labels, _ = list_image_folder(root)
    src = ImageFolder(files, labels, size=(8, 8))
    bad = files.index(root / "cat" / "broken.jpg")
    with pytest.raises(JaxdlError, match=r"cannot decode image .*broken\.jpg.*on_error='skip'"):
        src[bad]
    with pytest.raises(JaxdlError, match="broken.jpg|empty.png"):
        list(Pipeline(src, 4, shuffle=False).epoch(0))
    s = load_dataset(f"folder:{root},size=8x8,on_error=skip", val_fraction=0.0, test_fraction=0.2)
    assert s.info["num_skipped"] == 2 and {p.split("/")[-1] for p in s.info["skipped"]} == {
        "broken.jpg",
        "empty.png",
    }
    assert len(s.train) + len(s.test) == 10
    for b in Pipeline(s.train, 4).epoch(0):  # every remaining file decodes
        assert b["x"].shape == (4, 8, 8, 3)


def test_image_folder_bad_input(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(JaxdlError, match="no class sub-folders; expected .*CLASS_NAME"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("x")
    with pytest.raises(JaxdlError, match="hold no images"):
        load_dataset(f"folder:{tmp_path / 'noimg'}")
    with pytest.raises(JaxdlError, match="is not a directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(JaxdlError, match="option 'sz=3' is not one of size="):
        load_dataset(f"folder:{tmp_path / 'flat'},sz=3")
    with pytest.raises(JaxdlError, match="on_error must be 'raise' or 'skip'"):
        ImageFolder([], [], on_error="ignore")


# ---- TFDS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_through_data_source(tfds, name, shape):
    with tfds.testing.mock_data(num_examples=40):
        s = load_dataset(f"tfds:{name}", seed=0, val_fraction=0.25)
        assert s.input_shape == shape and s.num_classes == 10 and len(s.class_names) == 10
        assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 40)
        ex = s.test[3]
        assert ex["x"].dtype == np.float32 and 0.0 <= ex["x"].min() and ex["x"].max() <= 1.0
        assert ex["x"].shape == shape and ex["y"].dtype == np.int32 and 0 <= ex["y"] < 10
        ys = np.concatenate(
            [b["y"][b["weight"] > 0] for b in Pipeline(s.train, 8, seed=2).epoch(0)]
        )
        train_ids = sorted(int(s.train[i]["y"]) for i in range(len(s.train)))
        assert sorted(ys.tolist()) == train_ids  # one epoch reads every train example once


def test_tfds_resize_and_varying_sizes(tfds):
    with tfds.testing.mock_data(num_examples=12):
        s = load_dataset("tfds:cifar10,size=20x24", val_fraction=0.0)
        assert s.input_shape == (20, 24, 3) and s.train[0]["x"].shape == (20, 24, 3)
        with pytest.raises(JaxdlError, match="varying size.*tfds:imagenette,size=160x160"):
            load_dataset("tfds:imagenette")


def test_tfds_not_prepared_says_how_to_prepare(tfds, tmp_path):
    with pytest.raises(
        JaxdlError,
        match=r"tfds:mnist is not prepared \(no .*mnist.*tfds build mnist "
        r"--file_format=array_record --data_dir .*downloads/manual",
    ):
        load_dataset(f"tfds:mnist,data_dir={tmp_path}")
    with pytest.raises(JaxdlError, match="unknown TFDS dataset 'mnistt'.*mnist"):
        load_dataset("tfds:mnistt")


# ---- CSV ----------------------------------------------------------------------------------------


def test_csv_table(tmp_path):
    rows = ["sepal,petal,species"] + [
        f"{i * 0.1:.1f},{i % 3},{['setosa', 'virginica'][i % 2]}" for i in range(20)
    ]
    (tmp_path / "iris.csv").write_text("\n".join(rows) + "\n")
    s = load_dataset(f"csv:{tmp_path / 'iris.csv'}", val_fraction=0.0, test_fraction=0.2)
    assert (
        s.class_names == ["setosa", "virginica"]
        and s.input_shape == (2,)
        and s.info["feature_names"] == ["sepal", "petal"]
    )
    assert len(s.train) == 16 and len(s.test) == 4 and s.train.x.dtype == np.float32
    full = np.concatenate([s.train.x, s.test.x])
    lab = np.concatenate([s.train.y, s.test.y])
    # row i: species index i % 2, first feature i / 10
    np.testing.assert_array_equal(lab, np.round(full[:, 0] * 10).astype(int) % 2)
    with pytest.raises(JaxdlError, match="feature columns must be numeric.*'setosa'"):
        load_dataset(f"csv:{tmp_path / 'iris.csv'},label=petal")
    (tmp_path / "num.csv").write_text(
        "\n".join(f"{i % 3},{i}" for i in range(12)) + "\n"
    )  # no header
    s = load_dataset(f"csv:{tmp_path / 'num.csv'},label=0", val_fraction=0.0, test_fraction=0.25)
    assert s.num_classes == 3 and s.class_names == ["0", "1", "2"] and s.input_shape == (1,)
    np.testing.assert_array_equal(s.train.y, s.train.x[:, 0].astype(int) % 3)
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n2,y\n3,\n")
    with pytest.raises(JaxdlError, match="same number in every row|must be numeric"):
        load_dataset(f"csv:{tmp_path / 'bad.csv'},label=a")
    with pytest.raises(JaxdlError, match="label column 'z'"):
        load_dataset(f"csv:{tmp_path / 'iris.csv'},label=z")


# ---- text ---------------------------------------------------------------------------------------


def test_vocabularies_round_trip():
    text = "To be, or not to be: that is the question. Été!"
    char = CharVocab.from_text(text)
    assert char.decode(char.encode(text)) == text and len(char) == len(set(text))
    byte = CharVocab.from_text(text, "byte")
    ids = byte.encode(text)
    assert len(byte) == 256 and len(ids) == len(text.encode("utf-8")) and byte.decode(ids) == text
    word = CharVocab.from_text(text, "word")
    ids = word.encode(text)
    assert word.chars[0] == "<unk>" and word.chars[1] == "be"  # most frequent first
    assert word.decode(ids) == "To be , or not to be : that is the question . Été !"
    assert word.encode("to be or whatever")[-1] == 0  # an unknown word is <unk>
    small = CharVocab.from_text(text, "word", max_size=3)
    assert small.chars == ("<unk>", "be", "!") and len(small) == 3  # ties in character order
    with pytest.raises(JaxdlError, match="unknown vocabulary level 'words'"):
        CharVocab.from_text(text, "words")


def test_text_dataset(tmp_path, shared_data):
    s = load_dataset(
        f"text:{shared_data / 'tinyshakespeare' / 'input.txt'},seq_len=64",
        val_fraction=0.1,
        test_fraction=0.1,
    )
    vocab = s.info["vocab"]
    assert len(vocab) == 65 and s.num_classes == 65 and s.input_shape == (64,)
    np.testing.assert_array_equal(s.train.x[0, 1:], s.train.y[0, :-1])  # next-token targets
    assert vocab.decode(s.train.x[0]).startswith("First Citizen")
    n = len(s.train) + len(s.val) + len(s.test)
    assert n * 64 == pytest.approx(1115394, rel=1e-3)
    (tmp_path / "t.txt").write_text("one two three two one " * 30)
    w = load_dataset(
        f"text:{tmp_path / 't.txt'},level=word,seq_len=8", val_fraction=0.0, test_fraction=0.2
    )
    assert w.num_classes == 4 and w.train.x.shape[1] == 8
    b = load_dataset(f"text:{tmp_path / 't.txt'},level=byte,seq_len=8")
    assert b.num_classes == 256
    with pytest.raises(JaxdlError, match="too short for windows of 1000"):
        load_dataset(f"text:{tmp_path / 't.txt'},seq_len=1000")
    with pytest.raises(JaxdlError, match="does not exist"):
        load_dataset(f"text:{tmp_path / 'nope.txt'}")
