import keras
import numpy as np
import pytest

from core.detectors.autoencoder.layers import NeighborConv2D, neighbor_conv_reference
from core.detectors.autoencoder.models import build_cae, build_ncae


@pytest.mark.parametrize("channels, filters", [(1, 4), (3, 5)])
def test_fused_layer_equals_the_shift_and_pointwise_reference(channels, filters):
    rng = np.random.default_rng(channels)
    inputs = rng.normal(size=(2, 9, 7, channels)).astype("float32")
    layer = NeighborConv2D(filters, activation="linear")
    layer.build(inputs.shape)
    kernel = rng.normal(size=(3, 3, channels, filters)).astype("float32")  # centre tap non-zero on purpose
    bias = rng.normal(size=(filters,)).astype("float32")
    layer.set_weights([kernel, bias])
    for activation in ("linear", "relu"):
        layer.activation = keras.activations.get(activation)
        fused = keras.ops.convert_to_numpy(layer(inputs))
        reference = keras.ops.convert_to_numpy(neighbor_conv_reference(inputs, kernel, bias, activation))
        np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-5)


def test_output_never_depends_on_the_centre_pixel():
    layer = NeighborConv2D(3, activation="linear")
    image = np.zeros((1, 5, 5, 1), "float32")
    poked = image.copy()
    poked[0, 2, 2, 0] = 10.0
    difference = keras.ops.convert_to_numpy(layer(poked) - layer(image))[0, ..., 0]
    assert difference[2, 2] == 0.0            # the pixel itself
    assert np.count_nonzero(difference) == 8  # only its 8 neighbours see it


def test_layer_round_trips_through_a_saved_model(tmp_path):
    model = build_ncae(input_size=16, widths=(4,), bottleneck=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    batch = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(batch), loaded.predict_on_batch(batch), atol=1e-6)
    assert isinstance(loaded.get_layer("neighbor_conv"), NeighborConv2D)


def test_cae_differs_only_in_its_first_layer():
    ncae, cae = build_ncae(32, (8, 16), 4), build_cae(32, (8, 16), 4)
    assert [layer.name for layer in ncae.layers][2:] == [layer.name for layer in cae.layers][2:]
    assert isinstance(ncae.layers[1], NeighborConv2D) and not isinstance(cae.layers[1], NeighborConv2D)
    assert ncae.output_shape == cae.output_shape == (None, 32, 32, 1)


@pytest.mark.parametrize("arguments, message", [
    (dict(kind="vae"), "`kind` must be one of"),
    (dict(input_size=30, widths=(8, 8)), "multiple of 4"),
    (dict(widths=()), "`widths`"),
    (dict(noise_std=-1.0), "`noise_std`"),
])
def test_bad_builder_arguments_raise_value_error(arguments, message):
    from core.detectors.autoencoder.models import build_autoencoder

    with pytest.raises(ValueError, match=message):
        build_autoencoder(**arguments)


def test_bad_filters_raise_value_error():
    with pytest.raises(ValueError, match="`filters` must be a positive integer"):
        NeighborConv2D(0)


def test_denoising_noise_is_active_in_training_only():
    model = build_ncae(16, (4,), 2, noise_std=0.5)
    batch = np.full((1, 16, 16, 1), 0.5, "float32")
    inference = [keras.ops.convert_to_numpy(model(batch, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(*inference)
    noisy = model.get_layer("denoising_noise")
    assert not np.allclose(keras.ops.convert_to_numpy(noisy(batch, training=True)), batch)


def test_ssim_loss_is_zero_for_a_perfect_copy_and_grows_with_damage():
    from core.detectors.autoencoder.losses import ssim_loss

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 32, 32)).astype("float32")
    perfect = np.asarray(ssim_loss(images, images[..., None]))
    slightly = np.asarray(ssim_loss(images, np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)[..., None]
                                    .astype("float32")))
    badly = np.asarray(ssim_loss(images, np.full_like(images, 0.5)[..., None]))
    assert perfect == pytest.approx([0.0, 0.0], abs=1e-5)
    assert (0 < slightly).all() and (slightly < badly).all()


def test_a_detector_trains_with_the_ssim_loss():
    from core.detectors.autoencoder.detector import ResidualDetector

    rng = np.random.default_rng(1)
    good = rng.uniform(0.3, 0.7, (16, 32, 32)).astype("float32")
    detector = ResidualDetector(input_size=32, widths=(8, 16), bottleneck=4, epochs=2, batch_size=8, loss="ssim")
    history = detector.fit(good).history_
    assert len(history["loss"]) == 2 and all(0 <= value <= 2 for value in history["loss"])
    with pytest.raises(ValueError, match="loss"):
        ResidualDetector(input_size=32, widths=(8, 16), epochs=1, loss="mae").fit(good)
