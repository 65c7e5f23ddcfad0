"""Multi-head attention over [*N, T, dim] (self- or cross-attention, with masks and an additive
score bias), and the layers that make Swin's attention inputs: a learned relative position bias
and the shifted-window mask."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from netcfg.catalogue.base import (
    BUILD_DTYPE,
    SMALL,
    IntOrPair,
    Layer,
    NonNeg,
    Pos,
    Prob,
    Shape,
    is_float,
    last,
    matmul_flops,
    pair,
    prod,
    widened,
)
from netcfg.catalogue.shapes import ShapeError, check_rank, fmt

MaskKind = Literal["key_padding", "bool", "additive"]


class Attention(Layer):
    """Multi-head attention over [*N, T, dim]: self- or cross-attention, masks, a score bias.

    One or more batch dimensions N. Self-attention projects through one fused `qkv`,
    cross-attention (`cross`) through `q` and `kv`; the output through `proj`. The inputs after
    the queries, in this order: the keys/values source (cross), a mask (mask), an additive score
    bias (score_bias)."""

    type: Literal["attention"]
    heads: Pos
    """Number of query heads."""
    kv_heads: Pos | None = None
    """Number of key/value heads (grouped-query attention); default: heads. Must divide heads."""
    head_dim: Pos | None = None
    """Size of each head; default: input dim / heads."""
    causal: bool = False
    """Query i attends only to keys 0..i (top-left aligned when T != S, as PyTorch's is_causal)."""
    bias: bool = True
    """Biases on the q/k/v and output projections."""
    rotary: bool = False
    """Rotary position embeddings on queries and keys (self-attention only)."""
    rotary_base: Annotated[float, Field(gt=1.0)] = 10000.0
    """Base of the rotary frequencies."""
    dropout: Prob = 0.0
    """Attention-weight dropout during training."""
    cross: bool = False
    """Cross-attention: keys and values come from the second input [*N, S, kv_dim] (through `kv`,
    the queries through `q`); self-attention reads one input through the fused `qkv`."""
    mask: MaskKind | None = None
    """The next input is a mask: key_padding [*N, S], bool or integers, 1 = attend, 0 = padding
    (Hugging Face's attention_mask); bool [T, S], [*N, T, S] (every head) or [*N, heads, T, S],
    True = may attend (PyTorch's scaled_dot_product_attention); additive: those shapes, floats
    added to the scores (0 = attend, -inf = not). A size of 1 broadcasts."""
    score_bias: bool = False
    """The last input is a float added to the scores, broadcast to [*N, heads, T, S] as PyTorch
    broadcasts (a relative position bias [heads, T, S])."""

    float_only = True

    def input_roles(self) -> tuple[str, ...]:
        roles = ["queries", "keys and values"] if self.cross else ["input"]
        roles += [f"{self.mask} mask"] if self.mask else []
        return tuple(roles + (["score bias"] if self.score_bias else []))

    def split(self, items: list) -> tuple:
        """(queries, keys/values source, mask, score bias) of the inputs in order (shapes,
        dtypes or tensors); the source is the queries' input in self-attention; absent: None."""
        rest = list(items[1:])
        source = rest.pop(0) if self.cross else items[0]
        mask = rest.pop(0) if self.mask else None
        return items[0], source, mask, rest.pop(0) if self.score_bias else None

    def sizes(self, dim: int) -> tuple[int, int, int]:
        """(heads, kv_heads, head_dim) for an input of width `dim`."""
        return self.heads, self.kv_heads or self.heads, self.head_dim or max(dim // self.heads, 1)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape, source, mask, bias = self.split(shapes)
        check_rank(shape, 3, "attention")
        heads, kv_heads, head_dim = self.sizes(int(shape[-1]))
        if heads % kv_heads:
            raise ShapeError(f"kv_heads={kv_heads} must divide heads={heads}", key="kv_heads")
        if self.head_dim is None and shape[-1] % heads:
            raise ShapeError(f"input dim {shape[-1]} is not divisible by heads={heads} (or set head_dim)", key="heads")
        if self.rotary and head_dim % 2:
            raise ShapeError(f"rotary positions need an even head_dim, got {head_dim}", key="rotary")
        if self.cross:
            _check_source(shape, source, self.rotary)
        grid = Grid(tuple(shape[:-2]), heads, int(shape[-2]), int(source[-2]))
        if mask is not None:
            grid.check_mask(self.mask, mask)
        if bias is not None:
            grid.check_bias(bias)
        return shape

    def out_dtype(self, dtypes: list[str]) -> str:
        super().out_dtype(dtypes)
        query, source, mask, bias = self.split(dtypes)
        if self.cross and not is_float(source):
            raise ShapeError(f"the keys and values input is {source}: it must be floating-point", key="cross")
        if mask is not None:
            _check_mask_dtype(self.mask, mask)
        if bias is not None and not is_float(bias):
            raise ShapeError(f"the score bias is {bias}: it must be floating-point (added to the scores)",
                             key="score_bias")  # fmt: skip
        return query

    def elements(self, shapes: list[Shape]) -> int:
        query, source = self.split(shapes)[:2]
        dim, kv_dim = last(query), last(source)
        heads, kv, hd = self.sizes(dim)
        weights = dim * heads * hd + kv_dim * 2 * kv * hd + heads * hd * dim
        return weights + (((heads + 2 * kv) * hd + dim) if self.bias else 0)

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        query, source = self.split(shapes)[:2]
        heads, kv, hd = self.sizes(last(query))
        n, t, s = prod(query[:-2]), int(query[-2]), int(source[-2])
        projections = matmul_flops(query, heads * hd) + matmul_flops(source, 2 * kv * hd)
        projections += matmul_flops((*query[:-1], heads * hd), last(query))
        scores_and_mix = 2 * (2 * n * heads * t * s * hd)  # q @ k^T and weights @ v
        return projections + scores_and_mix

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        """The q/k/v projections, rotated queries and keys (with their temporaries), keys and
        values repeated to every head (grouped-query), the T x S scores and their softmax as
        PyTorch's reference (math) kernel makes them (the fused kernels need less), the masks
        and bias combined into one float mask of the scores' shape, and the heads' output with
        its [*N, T, heads * head_dim] copy for the output projection."""
        query, source, mask, bias = self.split(shapes)
        heads, kv, hd = self.sizes(last(query))
        n, t, s = prod(query[:-2]), int(query[-2]), int(source[-2])
        q, k = n * t * heads * hd, n * s * kv * hd
        rotary = 4 * (q + k) + 4 * t * hd if self.rotary else 0
        grouped = 2 * n * s * heads * hd if kv != heads else 0
        scores = n * heads * t * s
        masks = 2 * scores if mask is not None or bias is not None else 0
        return itemsize * (q + 2 * k + rotary + grouped + 2 * q) + widened(itemsize) * (2 * scores + masks)


def _check_source(query: Shape, source: Shape, rotary: bool) -> None:
    if rotary:
        raise ShapeError("rotary positions are for self-attention (cross: false)", key="rotary")
    if len(source) != len(query) or tuple(source[:-2]) != tuple(query[:-2]):
        raise ShapeError(
            f"the keys and values input {fmt(source)} does not fit the queries {fmt(query)}: it must be "
            f"[*N, S, kv_dim] with the same batch dimensions {fmt(query[:-2])}",
            key="cross",
        )


def _check_mask_dtype(kind: str, dtype: str) -> None:
    integer = dtype == "bool" or dtype.startswith(("int", "uint"))
    if kind == "key_padding" and not integer:
        raise ShapeError(f"a key_padding mask holds bool or integer values (1 = attend, 0 = padding), "
                         f"this one is {dtype}", key="mask")  # fmt: skip
    if kind == "bool" and dtype != "bool":
        hint = "floats added to the scores: mask: additive" if is_float(dtype) else "0/1 per key: mask: key_padding"
        raise ShapeError(f"a bool mask must be bool (True = may attend), this one is {dtype} ({hint})", key="mask")
    if kind == "additive" and not is_float(dtype):
        raise ShapeError(f"an additive mask must be floating-point (added to the scores), this one is {dtype} "
                         "(True/False per score: mask: bool)", key="mask")  # fmt: skip


class Grid:
    """The scores' shape [*N, heads, T, S], against which masks and biases are checked."""

    def __init__(self, batch: Shape, heads: int, t: int, s: int):
        self.batch, self.heads, self.t, self.s = batch, heads, t, s
        self.n = "N" if len(batch) == 1 else "*N"

    def forms(self, kind: str) -> list[tuple[str, Shape]]:
        """The shapes a mask of this kind may have, each with its name."""
        if kind == "key_padding":
            return [(f"[{self.n}, S]", (*self.batch, self.s))]
        t, s = self.t, self.s
        return [("[T, S]", (t, s)), (f"[{self.n}, T, S]", (*self.batch, t, s)),
                (f"[{self.n}, heads, T, S]", (*self.batch, self.heads, t, s))]  # fmt: skip

    def check_mask(self, kind: str, shape: Shape) -> None:
        forms = self.forms(kind)
        if not any(_fits(shape, want) for _, want in forms):
            listed = ", ".join(f"{name} = {fmt(want)}" for name, want in forms)
            raise ShapeError(f"the {kind} mask {fmt(shape)} fits none of {listed} (a size of 1 broadcasts)",
                             key="mask")  # fmt: skip

    def check_bias(self, shape: Shape) -> None:
        scores = (*self.batch, self.heads, self.t, self.s)
        if len(shape) > len(scores) or not _fits(shape, scores[len(scores) - len(shape) :]):
            raise ShapeError(f"the score bias {fmt(shape)} does not broadcast to the scores "
                             f"[{self.n}, heads, T, S] = {fmt(scores)}", key="score_bias")  # fmt: skip


def _fits(shape: Shape, want: Shape) -> bool:
    return len(shape) == len(want) and all(int(a) in (1, int(b)) for a, b in zip(shape, want, strict=True))


class RelativePositionBias(Layer):
    """Swin's learned relative position bias [heads, Wh Ww, Wh Ww], an attention score bias.

    A table `relative_position_bias_table` [(2 Wh - 1) (2 Ww - 1), heads] read through the buffer
    `relative_position_index` [(Wh Ww)^2] (torchvision's names and layout), out [heads, Wh Ww,
    Wh Ww]: the score bias of attention within a window. Its input is read for nothing (any node
    can feed it: the windows)."""

    type: Literal["relative_position_bias"]
    window: IntOrPair
    """Window size, Wh and Ww (one number: square)."""
    heads: Pos
    """Number of attention heads (one bias per head)."""

    def sizes(self) -> tuple[int, int]:
        height, width = pair(self.window, 2)
        return height, width

    def out_shape(self, shapes: list[Shape]) -> Shape:
        height, width = self.sizes()
        if isinstance(self.window, list) and len(self.window) != 2:
            raise ShapeError(f"window needs 2 sizes (height, width), got {len(self.window)}", key="window")
        return (self.heads, height * width, height * width)

    def out_dtype(self, dtypes: list[str]) -> str:
        return BUILD_DTYPE  # its table's, whatever the input

    def elements(self, shapes: list[Shape]) -> int:
        height, width = self.sizes()
        return (2 * height - 1) * (2 * width - 1) * self.heads + (height * width) ** 2

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 4 * prod(out)  # the gathered table [T * T, heads] before it is laid out per head (float32)


class WindowMask(Layer):
    """Swin's shifted-window attention mask [1, windows, Wh Ww, Wh Ww] (mask: additive).

    Computed from the geometry of a channels-last input [N, H, W, C] (read for its sizes only):
    out [1, windows, Wh Ww, Wh Ww], 0 between positions of
    the same region of the rolled image and -100 between positions of different ones (as
    torchvision's swin_t), for attention over windows [N, windows, Wh Ww, C] with mask: additive.
    With shift 0 it is all zeros. H and W must be multiples of the window."""

    type: Literal["window_mask"]
    window: IntOrPair
    """Window size, Wh and Ww (one number: square)."""
    shift: NonNeg | list[NonNeg] = 0
    """How far the image was rolled back (torch.roll by -shift) before the windows were cut."""
    value: float = -100.0
    """The score added between positions of different regions."""

    def geometry(self, shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """((Wh, Ww), (shift along H, along W)), checked against an input of this shape."""
        window, shift = pair(self.window, 2), pair(self.shift, 2)
        if len(window) != 2 or len(shift) != 2:
            raise ShapeError("window and shift need 2 sizes each (height, width)", key="window")
        check_rank(shape, 4, "window_mask", exact=4)
        sizes = (int(shape[1]), int(shape[2]))
        if any(n % w for n, w in zip(sizes, window, strict=True)):
            raise ShapeError(f"window {list(window)} does not tile the input {fmt(shape)} ([N, H, W, C]: H and W "
                             "must be multiples of it)", key="window")  # fmt: skip
        if any(s >= w for s, w in zip(shift, window, strict=True)):
            raise ShapeError(f"shift {list(shift)} must be smaller than the window {list(window)}", key="shift")
        return (window[0], window[1]), (shift[0], shift[1])

    def out_shape(self, shapes: list[Shape]) -> Shape:
        (wh, ww), _ = self.geometry(shapes[0])
        windows = (int(shapes[0][1]) // wh) * (int(shapes[0][2]) // ww)
        return (1, windows, wh * ww, wh * ww)

    def out_dtype(self, dtypes: list[str]) -> str:
        return dtypes[0] if is_float(dtypes[0]) else BUILD_DTYPE

    def elements(self, shapes: list[Shape]) -> int:
        return 0

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        h, w = int(shapes[0][1]), int(shapes[0][2])
        return 8 * (h * w + 2 * prod(out)) + SMALL  # region labels and their pairwise differences (int64)
