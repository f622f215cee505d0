"""keras_hub's vision backbones: ViT, DeiT, DINOV2."""
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
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'patch_size' is "
                               f"{config.get('patch_size')!r}; kerasonnx rebuilds it for a "
                               f"positive int or two")
    if height % size[0] or width % size[1]:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'patch_size' ({size}) "
                               f"does not tile the {height}x{width} image")
    return size


def _image_shape(config: dict, f: Functional, key: str) -> list:
    """``config[key]``: (height, width, channels), three positive ints."""
    shape = config.get(key)
    if not (isinstance(shape, list) and len(shape) == 3 and all(map(is_positive_int, shape))):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key {key!r} is "
                               f"{shape!r}; kerasonnx rebuilds it for (height, width, "
                               f"channels), three positive ints")
    return shape


@keras_hub_model("ViTBackbone", VIT_KEYS)
def vit_backbone(config: dict, f: Functional) -> None:
    """keras_hub's ViTBackbone on ``images`` (B, H, W, C): ViTPatchingAndEmbedding
    ``vit_patching_and_embedding`` (patches, class token, position table), ViTEncoder
    ``vit_encoder`` (ViTEncoderBlocks, final LayerNormalization): ``sequence_output``.
    The config does not record ``data_format``: keras_hub rebuilds the model in Keras'
    image_data_format, channels_last unless the user's keras.json says otherwise; this
    graph is the channels_last one."""
    height, width, channels = _image_shape(config, f, "image_shape")
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


# ---------------------------------------------------------------------- DeiT

DEIT_KEYS = {"image_shape", "patch_size", "num_layers", "num_heads", "hidden_dim",
             "intermediate_dim", "dropout_rate", "attention_dropout", "layer_norm_epsilon",
             "use_mha_bias"}
DEIT_LAYERS = "keras_hub.src.models.deit.deit_layers"


@keras_hub_model("DeiTBackbone", DEIT_KEYS)
def deit_backbone(config: dict, f: Functional) -> None:
    """keras_hub's DeiTBackbone on images (B, H, W, C): DeiTEmbeddings
    ``deit_patching_and_embedding`` (patches, class and distillation tokens, position
    table), DeiTEncoder ``deit_encoder`` (DeiTEncoderBlocks, final LayerNormalization),
    whose first output is the model's. keras_hub leaves the input unnamed (Keras names it
    per process); kerasonnx names it ``images``, as ViT's and DINOV2's. Channels_last, as
    for ViT (the config does not record ``data_format``)."""
    height, width, channels = _image_shape(config, f, "image_shape")
    patch = _patch_size(config, f, height, width)
    layers, heads, hidden, intermediate = (
        f.require(config, key, is_positive_int, "a positive int")
        for key in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim"))
    rates = {key: f.require(config, key, is_rate, "a rate in [0, 1)")
             for key in ("dropout_rate", "attention_dropout")}
    epsilon = f.require(config, "layer_norm_epsilon", is_positive_number, "a positive number")
    use_mha_bias = f.require(config, "use_mha_bias", is_flag, "true or false")
    patches = (height // patch[0]) * (width // patch[1])
    images = f.input("images", "float32", (None, height, width, channels))
    x = f.layer("DeiTEmbeddings", "deit_patching_and_embedding",
                {"image_size": [height, width], "patch_size": patch, "hidden_dim": hidden,
                 "num_channels": channels, "num_patches": patches,
                 "num_positions": patches + 2, "use_mask_token": False,
                 "dropout_rate": rates["dropout_rate"]}, images, module=DEIT_LAYERS)
    x = f.layer("DeiTEncoder", "deit_encoder",
                {"num_layers": layers, "num_heads": heads, "hidden_dim": hidden,
                 "intermediate_dim": intermediate, "use_mha_bias": use_mha_bias,
                 "layer_norm_epsilon": epsilon, **rates}, x, module=DEIT_LAYERS)
    f.outputs.update(sequence_output=x)


# ---------------------------------------------------------------------- DINOV2

DINOV2_KEYS = {"patch_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
               "layer_scale_init_value", "num_register_tokens", "use_mask_token",
               "use_swiglu_ffn", "dropout_rate", "drop_path_rate", "image_shape",
               "position_embedding_shape", "antialias_in_interpolation", "apply_layernorm"}
DINOV2_LAYERS = "keras_hub.src.models.dinov2.dinov2_layers"


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@keras_hub_model("DINOV2Backbone", DINOV2_KEYS)
def dinov2_backbone(config: dict, f: Functional) -> None:
    """keras_hub's DINOV2Backbone on ``images`` (B, H, W, C): DINOV2Embedding
    ``<name>_embeddings`` (patches, class token, position table, register tokens),
    DINOV2Encoder ``<name>_encoder`` (DINOV2Layers: layer scale, MLP or SwiGLU FFN),
    LayerNormalization(1e-6) ``<name>_layernorm``, whose output is the model's (keras_hub
    prefixes the layer names with the model's name). ``layer_scale_init_value`` only
    initialises lambda1; ``apply_layernorm`` only changes the pyramid outputs, which are
    not model outputs; ``use_mask_token`` only adds a weight used in training.
    keras_hub resizes the position table (bicubic, with the backend's resize) when
    ``image_shape`` is not ``position_embedding_shape``: folded as TensorFlow's
    ResizeBicubic computes it; antialiased resizing is refused."""
    height, width, channels = _image_shape(config, f, "image_shape")
    pretraining = _image_shape(config, f, "position_embedding_shape")
    if height != width:
        raise ModelConfigError(f"{f.source}: DINOV2Backbone config key 'image_shape' is "
                               f"{config['image_shape']!r}; keras_hub builds it square only")
    resized = pretraining[:2] != [height, width]
    if resized and config.get("antialias_in_interpolation"):
        raise ModelConfigError(
            f"{f.source}: DINOV2Backbone config key 'antialias_in_interpolation' is true with "
            f"an image_shape ({config['image_shape']}) other than position_embedding_shape "
            f"({pretraining}): kerasonnx resizes the position table without antialiasing only")
    if pretraining[0] != pretraining[1]:
        raise ModelConfigError(f"{f.source}: DINOV2Backbone config key "
                               f"'position_embedding_shape' is {pretraining!r}; keras_hub "
                               f"resizes a square position table only")
    patch = f.require(config, "patch_size", is_positive_int, "a positive int")
    if height % patch:
        raise ModelConfigError(f"{f.source}: DINOV2Backbone config key 'patch_size' "
                               f"({patch}) does not tile the {height}x{width} image")
    layers, hidden, heads, intermediate = (
        f.require(config, key, is_positive_int, "a positive int")
        for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim"))
    registers = f.require(config, "num_register_tokens", is_count, "an int >= 0")
    flags = {key: f.require(config, key, is_flag, "true or false")
             for key in ("use_mask_token", "use_swiglu_ffn", "antialias_in_interpolation",
                         "apply_layernorm")}
    rates = {key: f.require(config, key, is_rate, "a rate in [0, 1)")
             for key in ("dropout_rate", "drop_path_rate")}
    scale = f.require(config, "layer_scale_init_value",
                      lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                      "a number")
    prefix = f"{config['name']}_" if config.get("name") is not None else ""
    images = f.input("images", "float32", (None, height, width, channels))
    x = f.layer("DINOV2Embedding", f"{prefix}embeddings",
                {"hidden_dim": hidden, "patch_size": patch, "image_shape": [height, width],
                 "num_register_tokens": registers, "use_mask_token": flags["use_mask_token"],
                 "dropout_rate": rates["dropout_rate"],
                 "position_embedding_shape": pretraining[:2],
                 "antialias_in_interpolation": flags["antialias_in_interpolation"]},
                images, module=DINOV2_LAYERS)
    x = f.layer("DINOV2Encoder", f"{prefix}encoder",
                {"num_layers": layers, "hidden_dim": hidden, "num_heads": heads,
                 "intermediate_dim": intermediate, "layer_scale_init_value": scale,
                 "use_swiglu_ffn": flags["use_swiglu_ffn"], **rates}, x,
                module=DINOV2_LAYERS)
    x = f.layer("LayerNormalization", f"{prefix}layernorm", {"axis": -1, "epsilon": 1e-6}, x)
    f.outputs[x.layer] = x
