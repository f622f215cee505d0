"""keras_hub's vision backbones: ViT."""
from __future__ import annotations

from ..errors import ModelConfigError
from .builder import (Functional, is_flag, is_positive_int, is_positive_number, is_rate,
                      keras_hub_model)

VIT_KEYS = {"image_shape", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
            "dropout_rate", "attention_dropout", "layer_norm_epsilon", "use_mha_bias",
            "use_mlp_bias", "use_class_token", "use_patch_bias"}
VIT_LAYERS = "keras_hub.src.models.vit.vit_layers"


def _patch_size(config: dict, f: Functional, height: int, width: int) -> list:
    """``patch_size`` (an int or [h, w]) as [h, w], which must tile the image."""
    size = config.get("patch_size")
    size = [size, size] if is_positive_int(size) else size
    if not (isinstance(size, list) and len(size) == 2 and all(map(is_positive_int, size))):
        raise ModelConfigError(f"{f.source}: ViTBackbone config key 'patch_size' is "
                               f"{config.get('patch_size')!r}; kerasonnx rebuilds it for a "
                               f"positive int or two")
    if height % size[0] or width % size[1]:
        raise ModelConfigError(f"{f.source}: ViTBackbone config key 'patch_size' ({size}) "
                               f"does not tile the {height}x{width} image")
    return size


@keras_hub_model("ViTBackbone", VIT_KEYS)
def vit_backbone(config: dict, f: Functional) -> None:
    """keras_hub's ViTBackbone on ``images`` (B, H, W, C): ViTPatchingAndEmbedding
    ``vit_patching_and_embedding`` (patches, class token, position table), ViTEncoder
    ``vit_encoder`` (ViTEncoderBlocks, final LayerNormalization): ``sequence_output``.
    The config does not record ``data_format``: keras_hub rebuilds the model in Keras'
    image_data_format, channels_last unless the user's keras.json says otherwise; this
    graph is the channels_last one."""
    shape = config.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(map(is_positive_int, shape))):
        raise ModelConfigError(f"{f.source}: ViTBackbone config key 'image_shape' is "
                               f"{shape!r}; kerasonnx rebuilds it for (height, width, "
                               f"channels), three positive ints")
    height, width, channels = shape
    patch = _patch_size(config, f, height, width)
    layers, heads, hidden, mlp = (f.require(config, key, is_positive_int, "a positive int")
                                  for key in ("num_layers", "num_heads", "hidden_dim",
                                              "mlp_dim"))
    rates = {key: f.require(config, key, is_rate, "a rate in [0, 1)")
             for key in ("dropout_rate", "attention_dropout")}
    flags = {key: f.require(config, key, is_flag, "true or false")
             for key in ("use_mha_bias", "use_mlp_bias", "use_class_token",
                         "use_patch_bias")}
    epsilon = f.require(config, "layer_norm_epsilon", is_positive_number, "a positive number")
    patches = (height // patch[0]) * (width // patch[1])
    images = f.input("images", "float32", (None, height, width, channels))
    x = f.layer("ViTPatchingAndEmbedding", "vit_patching_and_embedding",
                {"image_size": [height, width], "patch_size": patch, "hidden_dim": hidden,
                 "num_channels": channels, "num_patches": patches,
                 "num_positions": patches + flags["use_class_token"],
                 "use_class_token": flags["use_class_token"],
                 "use_patch_bias": flags["use_patch_bias"], "data_format": "channels_last"},
                images, module=VIT_LAYERS)
    x = f.layer("ViTEncoder", "vit_encoder",
                {"num_layers": layers, "num_heads": heads, "hidden_dim": hidden,
                 "mlp_dim": mlp, "use_mha_bias": flags["use_mha_bias"],
                 "use_mlp_bias": flags["use_mlp_bias"], "layer_norm_epsilon": epsilon,
                 **rates}, x, module=VIT_LAYERS)
    f.outputs.update(sequence_output=x)
