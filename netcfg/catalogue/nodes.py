"""The built-in layer catalogue: one pydantic model per layer type. No torch here.

Each model is the argument schema of one ``type:``. The field docstrings are the help
of ``netcfg layers`` and the descriptions in ``netcfg schema``. Input sizes
(``in_features``, ``in_channels`` ...) are optional everywhere: the builder infers
them from the sample input; give them only to have the builder check them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Pos = Annotated[int, Field(ge=1, le=2**31 - 1)]
Dim = Annotated[int, Field(ge=-8, le=8)]
NonNeg = Annotated[int, Field(ge=0, le=2**31 - 1)]
IntOrPair = Pos | list[Pos]
Prob = Annotated[float, Field(ge=0.0, lt=1.0)]


class Node(BaseModel):
    """Fields every module node has."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True, defer_build=True, allow_inf_nan=False
    )

    type: str
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Attribute name of this module inside its parent (default: its position, as in nn.Sequential)."""
    inputs: str | list[str] | None = None
    """Graph nodes only: names of the earlier nodes (or 'input') this node reads; default: the previous node."""
    trainable: bool = True
    """false freezes every parameter of this module (requires_grad=False)."""

    _path: tuple = PrivateAttr(())


# ---------------------------------------------------------------- dense and conv


class Linear(Node):
    """Fully connected layer y = x W^T + b (torch.nn.Linear) over the last dimension."""

    type: Literal["linear"]
    out_features: Pos
    """Size of each output sample."""
    bias: bool = True
    """Learn an additive bias."""
    in_features: Pos | None = None
    """Size of each input sample; inferred when omitted, checked when given."""


class _ConvArgs(Node):
    out_channels: Pos
    """Number of output channels."""
    kernel_size: IntOrPair
    """Size of the convolving kernel."""
    stride: IntOrPair = 1
    """Stride of the convolution."""
    dilation: IntOrPair = 1
    """Spacing between kernel elements."""
    groups: Pos = 1
    """Number of blocked connections from input to output channels."""
    bias: bool = True
    """Learn an additive bias."""
    in_channels: Pos | None = None
    """Input channels (dimension 1); inferred when omitted, checked when given."""


class _ConvBase(_ConvArgs):
    padding: NonNeg | list[NonNeg] | Literal["same", "valid"] = 0
    """Zero padding on each side, or 'same' / 'valid'."""


class Conv1d(_ConvBase):
    """1-D convolution over input [N, C, L] (torch.nn.Conv1d)."""

    type: Literal["conv1d"]


class Conv2d(_ConvBase):
    """2-D convolution over input [N, C, H, W] (torch.nn.Conv2d)."""

    type: Literal["conv2d"]


class _ConvTransposeBase(_ConvArgs):
    padding: NonNeg | list[NonNeg] = 0
    """dilation * (kernel_size - 1) - padding zeros are added to each side of the input."""
    output_padding: NonNeg | list[NonNeg] = 0
    """Extra size added to one side of each output dimension (below stride or dilation)."""


class ConvTranspose1d(_ConvTransposeBase):
    """1-D transposed convolution over [N, C, L] (torch.nn.ConvTranspose1d), as in a decoder."""

    type: Literal["conv_transpose1d"]


class ConvTranspose2d(_ConvTransposeBase):
    """2-D transposed convolution over [N, C, H, W] (torch.nn.ConvTranspose2d), as in a U-Net decoder."""

    type: Literal["conv_transpose2d"]


# ---------------------------------------------------------------- normalization


class _BatchNormBase(Node):
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    momentum: float = Field(0.1, ge=0, le=1)
    """Running statistics momentum."""
    affine: bool = True
    """Learn a per-channel scale and shift."""
    track_running_stats: bool = True
    """Keep running mean and variance buffers."""
    num_features: Pos | None = None
    """Channels (dimension 1); inferred when omitted."""


class BatchNorm1d(_BatchNormBase):
    """Batch normalization over [N, C] or [N, C, L] (torch.nn.BatchNorm1d)."""

    type: Literal["batchnorm1d"]


class BatchNorm2d(_BatchNormBase):
    """Batch normalization over [N, C, H, W] (torch.nn.BatchNorm2d)."""

    type: Literal["batchnorm2d"]


class LayerNorm(Node):
    """Layer normalization over the trailing `dims` dimensions (torch.nn.LayerNorm)."""

    type: Literal["layernorm"]
    dims: Annotated[int, Field(ge=1, le=8)] = 1
    """How many trailing dimensions to normalize over."""
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    elementwise_affine: bool = True
    """Learn a scale (weight)."""
    bias: bool = True
    """Learn a shift (bias) too."""


class RMSNorm(Node):
    """Root-mean-square normalization over the trailing `dims` dimensions (torch.nn.RMSNorm)."""

    type: Literal["rmsnorm"]
    dims: Annotated[int, Field(ge=1, le=8)] = 1
    """How many trailing dimensions to normalize over."""
    eps: Annotated[float, Field(gt=0)] | None = None
    """Added inside the root; default: the dtype's machine epsilon."""
    elementwise_affine: bool = True
    """Learn a scale (weight)."""


class GroupNorm(Node):
    """Group normalization over channels (dimension 1) split into groups (torch.nn.GroupNorm)."""

    type: Literal["groupnorm"]
    groups: Pos
    """Number of groups; must divide the channel count."""
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    affine: bool = True
    """Learn a per-channel scale and shift."""


class Dropout(Node):
    """Zeroes elements with probability p during training (torch.nn.Dropout)."""

    type: Literal["dropout"]
    p: Prob = 0.5
    """Probability of an element to be zeroed."""


# ---------------------------------------------------------------- embeddings


class Embedding(Node):
    """Token embedding: integer ids [..] -> vectors [.., embedding_dim] (torch.nn.Embedding)."""

    type: Literal["embedding"]
    num_embeddings: Pos
    """Vocabulary size; input ids must lie in [0, num_embeddings)."""
    embedding_dim: Pos
    """Size of each embedding vector."""
    padding_idx: NonNeg | None = None
    """Id whose vector is zero and receives no gradient."""


class PosEmbedding(Node):
    """Learned positional embedding: input [N, T, ...] -> position vectors [1, T, dim] (weight [max_len, dim])."""

    type: Literal["pos_embedding"]
    max_len: Pos
    """Longest sequence supported."""
    dim: Pos
    """Size of each position vector."""


# ---------------------------------------------------------------- activations


class ReLU(Node):
    """max(0, x)."""

    type: Literal["relu"]


class GELU(Node):
    """Gaussian error linear unit (torch.nn.GELU)."""

    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"
    """'tanh' uses the tanh approximation (as GPT-2)."""


class SiLU(Node):
    """x * sigmoid(x), also called swish."""

    type: Literal["silu"]


class Tanh(Node):
    """Hyperbolic tangent."""

    type: Literal["tanh"]


class Sigmoid(Node):
    """Logistic sigmoid."""

    type: Literal["sigmoid"]


class Softmax(Node):
    """Softmax along `dim`."""

    type: Literal["softmax"]
    dim: Dim = -1
    """Dimension that sums to one."""


class LogSoftmax(Node):
    """Log of the softmax along `dim`."""

    type: Literal["log_softmax"]
    dim: Dim = -1
    """Dimension of the softmax."""


class LeakyReLU(Node):
    """max(0, x) + negative_slope * min(0, x)."""

    type: Literal["leaky_relu"]
    negative_slope: float = 0.01
    """Slope for negative inputs."""


class ELU(Node):
    """Exponential linear unit."""

    type: Literal["elu"]
    alpha: float = 1.0
    """Saturation value for negative inputs."""


class Softplus(Node):
    """log(1 + exp(beta x)) / beta."""

    type: Literal["softplus"]
    beta: float = 1.0
    """Sharpness."""


class ReLU6(Node):
    """min(max(0, x), 6) (MobileNet)."""

    type: Literal["relu6"]


class Hardtanh(Node):
    """x clamped to [min_val, max_val]."""

    type: Literal["hardtanh"]
    min_val: float = -1.0
    """Lower bound."""
    max_val: float = 1.0
    """Upper bound."""


class Hardswish(Node):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    type: Literal["hardswish"]


class Hardsigmoid(Node):
    """relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate)."""

    type: Literal["hardsigmoid"]


class Mish(Node):
    """x * tanh(softplus(x))."""

    type: Literal["mish"]


# ---------------------------------------------------------------- pooling and shape


class _PoolBase(Node):
    kernel_size: IntOrPair
    """Window size."""
    stride: IntOrPair | None = None
    """Window stride; default: kernel_size."""
    padding: NonNeg | list[NonNeg] = 0
    """Implicit padding on each side."""
    ceil_mode: bool = False
    """Round the output size up: a last window that starts inside the input is kept."""


class _AvgPoolBase(_PoolBase):
    count_include_pad: bool = True
    """Count the zero padding in the mean."""


class MaxPool1d(_PoolBase):
    """Max over windows of [N, C, L]."""

    type: Literal["maxpool1d"]


class MaxPool2d(_PoolBase):
    """Max over windows of [N, C, H, W]."""

    type: Literal["maxpool2d"]


class AvgPool1d(_AvgPoolBase):
    """Mean over windows of [N, C, L]."""

    type: Literal["avgpool1d"]


class AvgPool2d(_AvgPoolBase):
    """Mean over windows of [N, C, H, W]."""

    type: Literal["avgpool2d"]


class AdaptiveAvgPool1d(Node):
    """Mean pooling to a fixed output length."""

    type: Literal["adaptive_avgpool1d"]
    output_size: Pos = 1
    """Output length."""


class AdaptiveAvgPool2d(Node):
    """Mean pooling to a fixed output size (as before a ResNet's classifier)."""

    type: Literal["adaptive_avgpool2d"]
    output_size: IntOrPair = 1
    """Output height and width."""


class AdaptiveMaxPool2d(Node):
    """Max pooling to a fixed output size."""

    type: Literal["adaptive_maxpool2d"]
    output_size: IntOrPair = 1
    """Output height and width."""


class Flatten(Node):
    """Flattens dimensions start_dim..end_dim into one."""

    type: Literal["flatten"]
    start_dim: Dim = 1
    """First dimension to flatten."""
    end_dim: Dim = -1
    """Last dimension to flatten."""


class Reshape(Node):
    """Reshapes each sample, keeping the batch dimension: [N, ...] -> [N, *shape]."""

    type: Literal["reshape"]
    shape: list[Annotated[int, Field(ge=-1, le=2**31 - 1)]] = Field(min_length=1, max_length=8)
    """New per-sample shape; one entry may be -1."""


class Identity(Node):
    """Returns its input unchanged."""

    type: Literal["identity"]


class Permute(Node):
    """Reorders the dimensions, batch included: output dimension i is input dimension dims[i] (torch.permute)."""

    type: Literal["permute"]
    dims: list[Dim] = Field(min_length=2, max_length=8)
    """A permutation of the input's dimensions, e.g. [0, 2, 3, 1] for [N, C, H, W] -> [N, H, W, C]."""


class Select(Node):
    """Keeps one index along `dim` and drops that dimension: x[:, 0] (a class token) for dim 1, index 0."""

    type: Literal["select"]
    index: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
    """The index kept (negative counts from the end)."""
    dim: Dim = 1
    """The dimension (not the batch dimension 0)."""


class Slice(Node):
    """Keeps start:stop:step along `dim` (the dimension stays): x[:, 1:] for dim 1, start 1."""

    type: Literal["slice"]
    start: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | None = None
    """First index kept (default 0; negative counts from the end)."""
    stop: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | None = None
    """Index after the last one kept (default: the end)."""
    step: Pos = 1
    """Keep every step-th index."""
    dim: Dim = 1
    """The dimension (not the batch dimension 0)."""


class Upsample(Node):
    """Resizes [N, C, L] or [N, C, H, W] by `scale_factor` or to `size` (torch.nn.Upsample)."""

    type: Literal["upsample"]
    scale_factor: Annotated[float, Field(gt=0, le=1024)] | list[Annotated[float, Field(gt=0, le=1024)]] | None = None
    """Multiplier of each spatial size (give this or size)."""
    size: IntOrPair | None = None
    """Output spatial size (give this or scale_factor)."""
    mode: Literal["nearest", "linear", "bilinear", "bicubic"] = "nearest"
    """Interpolation: nearest; linear for [N, C, L]; bilinear or bicubic for [N, C, H, W]."""
    align_corners: bool | None = None
    """For linear, bilinear and bicubic: align the corner pixels of input and output."""


class ClassToken(Node):
    """Prepends a learned token to a sequence: [N, T, dim] -> [N, T + 1, dim] (ViT's class token).

    Its parameter `token` [1, 1, dim] starts at zeros, as in torchvision's ViT."""

    type: Literal["class_token"]
    dim: Pos | None = None
    """Token width (the input's last dimension); inferred when omitted, checked when given."""


class LayerScale(Node):
    """Multiplies by a learned vector `gamma` along one dimension (ConvNeXt, CaiT), initialized to `value`."""

    type: Literal["layer_scale"]
    value: float = 1e-6
    """Initial value of every element of gamma."""
    dim: Literal[1, -1] = -1
    """-1: the last dimension (channels last); 1: the channels of [N, C, ...]."""


# ---------------------------------------------------------------- attention


class Attention(Node):
    """Multi-head self-attention over [N, T, dim] with fused q/k/v projection `qkv` and output `proj`."""

    type: Literal["attention"]
    heads: Pos
    """Number of query heads."""
    kv_heads: Pos | None = None
    """Number of key/value heads (grouped-query attention); default: heads. Must divide heads."""
    head_dim: Pos | None = None
    """Size of each head; default: input dim / heads."""
    causal: bool = False
    """Each position attends only to itself and earlier positions."""
    bias: bool = True
    """Biases on the q/k/v and output projections."""
    rotary: bool = False
    """Rotary position embeddings on queries and keys."""
    rotary_base: Annotated[float, Field(gt=1.0)] = 10000.0
    """Base of the rotary frequencies."""
    dropout: Prob = 0.0
    """Attention-weight dropout during training."""


# ---------------------------------------------------------------- merges


class Add(Node):
    """Elementwise sum of all inputs (broadcasting)."""

    type: Literal["add"]


class Mul(Node):
    """Elementwise product of all inputs (broadcasting)."""

    type: Literal["mul"]


class Concat(Node):
    """Concatenation of all inputs along `dim`."""

    type: Literal["concat"]
    dim: Dim = -1
    """Dimension to concatenate along."""


class Stack(Node):
    """Stacks all inputs along a new dimension `dim`."""

    type: Literal["stack"]
    dim: Dim = 0
    """Position of the new dimension."""


# ---------------------------------------------------------------- the chapter's custom layers


class Centered(Node):
    """Parameter-free centering: x - mean(x) over all elements."""

    type: Literal["centered"]


class DenseReLU(Node):
    """Dense layer with built-in ReLU and its own parameters: relu(x @ weight + bias), weight [in, units]."""

    type: Literal["dense_relu"]
    units: Pos
    """Output size."""
    in_units: Pos | None = None
    """Input size; inferred when omitted."""


class TensorReduction(Node):
    """y_k = sum_ij W_ijk x_i x_j over the last dimension; weight [in, in, out_features]."""

    type: Literal["tensor_reduction"]
    out_features: Pos
    """Size of y."""


class Fourier(Node):
    """Leading half (n // 2) of the discrete Fourier coefficients along the last dimension."""

    type: Literal["fourier"]
    output: Literal["complex", "abs", "real_imag"] = "complex"
    """complex tensor, magnitudes, or real and imaginary parts concatenated (last dim 2 * (n // 2))."""


class FixedMatmul(Node):
    """x @ W + bias with a constant random W [in, out_features] stored as a buffer (not trained)."""

    type: Literal["fixed_matmul"]
    out_features: Pos
    """Columns of W."""
    low: float = 0.0
    """W is uniform in [low, high)."""
    high: float = 1.0
    """W is uniform in [low, high)."""
    bias: float = 0.0
    """Constant added after the product."""


class Scale(Node):
    """Multiplies by a constant."""

    type: Literal["scale"]
    value: float
    """The constant."""


# ---------------------------------------------------------------- composition


class Sequential(Node):
    """Runs `layers` in order, each on the previous output (torch.nn.Sequential)."""

    type: Literal["sequential"]
    layers: list[Any] = Field(min_length=1)
    """Module nodes, in order."""


class Parallel(Node):
    """Runs every branch on the same input and merges their outputs."""

    type: Literal["parallel"]
    branches: list[Any] = Field(min_length=1)
    """Module nodes run side by side."""
    merge: Literal["concat", "add", "mul", "stack"] = "concat"
    """How branch outputs are combined."""
    dim: Dim = -1
    """Dimension for concat and stack."""


class Residual(Node):
    """body(x) + shortcut(x); shortcut defaults to the identity."""

    type: Literal["residual"]
    body: Any
    """Main path."""
    shortcut: Any = None
    """Projection path (for example a strided 1x1 conv); default: identity."""


class Graph(Node):
    """Named nodes, each reading named earlier outputs ('input' is the graph's input)."""

    type: Literal["graph"]
    nodes: dict[str, Any] = Field(min_length=1)
    """Mapping from node name to module node; a node reads the previous node unless `inputs` says otherwise."""
    output: str | None = None
    """Node whose output the graph returns; default: the last node."""


class Shared(Node):
    """Uses the module defined under the top-level `shared:` key; every use is the same module."""

    type: Literal["shared"]
    ref: str
    """Name under the top-level `shared:` mapping."""


class Repeat(Node):
    """N independent copies of `body` in sequence (an nn.Sequential named 0..N-1), or side by side
    with `merge` (a parallel node)."""

    type: Literal["repeat"]
    times: Annotated[int, Field(ge=1, le=10_000)]
    """Number of copies."""
    index: str = Field("index", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name under which ${...} expressions in the body see the copy number (0-based)."""
    body: Any
    """The module node to copy."""
    merge: Literal["concat", "add", "mul", "stack"] | None = None
    """Run the copies side by side on the same input and combine their outputs so (default: in sequence)."""
    dim: Dim = -1
    """With merge: the dimension for concat and stack."""


class Block(Node):
    """An instance of a template from the top-level `blocks:` mapping."""

    type: Literal["block"]
    block: str
    """Template name."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Values for the template's arguments."""


LAYERS: list[type[Node]] = [
    Linear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d,
    BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm, GroupNorm, Dropout,
    Embedding, PosEmbedding, ClassToken, LayerScale,
    ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LogSoftmax, LeakyReLU, ELU, Softplus,
    ReLU6, Hardtanh, Hardswish, Hardsigmoid, Mish,
    MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, Upsample,
    Flatten, Reshape, Permute, Select, Slice, Identity,
    Attention,
    Centered, DenseReLU, TensorReduction, Fourier, FixedMatmul, Scale,
]  # fmt: skip
MERGES: list[type[Node]] = [Add, Mul, Concat, Stack]
COMPOSITES: list[type[Node]] = [Sequential, Parallel, Residual, Graph, Shared]
EXPANSIONS: list[type[Node]] = [Repeat, Block]

# Layers that act element by element or normalize: output shaped as the input, no matrix work.
ELEMENTWISE = frozenset({
    "batchnorm1d", "batchnorm2d", "layernorm", "rmsnorm", "groupnorm", "dropout", "relu", "gelu", "silu", "tanh",
    "sigmoid", "softmax", "log_softmax", "leaky_relu", "elu", "softplus", "identity", "centered", "scale",
    "relu6", "hardtanh", "hardswish", "hardsigmoid", "mish", "layer_scale",
})  # fmt: skip

# Fields of composite nodes that hold child module nodes, and their shape.
CHILD_FIELDS: dict[str, dict[str, str]] = {
    "sequential": {"layers": "list"},
    "parallel": {"branches": "list"},
    "residual": {"body": "one", "shortcut": "one"},
    "graph": {"nodes": "map"},
    "repeat": {"body": "one"},
}
