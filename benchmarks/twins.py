"""Hand-written PyTorch twins of the shipped specs, as torchvision and nanoGPT write them.

- `resnet(...)`: torchvision's ResNet (v1.5, the stride on the bottleneck's 3x3 conv),
  with torchvision's module names and initialization; twin of configs/resnet*.yaml.
- `gpt2(...)`: nanoGPT-style GPT-2 with the head tied to the token embedding and
  GPT-2's initialization; twin of configs/gpt2.yaml.
- `SwinTransformer(...)`: torchvision's Swin Transformer (v1: shifted windows, relative
  position bias, patch merging, stochastic depth), its module names and initialization;
  twin of configs/swin_t.yaml.

Plain PyTorch only (no netcfg import), so the tests can compare what netcfg builds
against an independent implementation, and the benchmarks can time both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# ResNet (torchvision layout)
# ---------------------------------------------------------------------------------------------

RESNET_LAYOUTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
"""Name -> (block kind, blocks per stage), as in torchvision.models."""


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], num_classes: int = 1000):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must have 4 entries (blocks per stage), got {list(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet(block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000) -> ResNet:
    """torchvision's ResNet: `block` is "basic" or "bottleneck", `layers` the blocks per stage."""
    if block not in _BLOCKS:
        raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
    return ResNet(_BLOCKS[block], layers, num_classes)


def resnet_by_name(name: str, num_classes: int = 1000) -> ResNet:
    """resnet18 / resnet34 / resnet50 / resnet101 / resnet152."""
    block, layers = RESNET_LAYOUTS[name]
    return resnet(block, layers, num_classes)


# ---------------------------------------------------------------------------------------------
# GPT-2 (nanoGPT layout)
# ---------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, causal: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width, self.heads, self.dropout, self.causal = width, heads, dropout, causal
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).split(self.width, dim=-1)
        q = q.view(n, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(n, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(n, t, self.heads, d // self.heads).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(
        self,
        layers: int = 12,
        heads: int = 12,
        width: int = 768,
        context: int = 1024,
        vocab: int = 50257,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.context = context
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, width),
                wpe=nn.Embedding(context, width),
                drop=nn.Dropout(dropout),
                h=nn.ModuleList([Block(width, heads, dropout) for _ in range(layers)]),
                ln_f=nn.LayerNorm(width),
            )
        )
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.tie_weights()

        self.apply(self._init_weights)
        std = 0.02 / math.sqrt(2 * layers)  # GPT-2's scaled init of the residual projections
        for name, p in self.named_parameters():
            if name.endswith(("c_proj.weight", "attn.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=std)

    def tie_weights(self) -> None:
        """One Parameter under two names (again after `to_empty`, which gives each name its own tensor)."""
        self.transformer.wte.weight = self.lm_head.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n, t = idx.shape
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the context {self.context}")
        tok = self.transformer.wte(idx)
        pos = self.transformer.wpe(torch.arange(t, device=idx.device))
        x = self.transformer.drop(tok + pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def gpt2(
    layers: int = 12,
    heads: int = 12,
    width: int = 768,
    context: int = 1024,
    vocab: int = 50257,
    dropout: float = 0.1,
) -> GPT:
    """GPT-2 small (124M) by default, with dropout 0.1 as in configs/gpt2.yaml."""
    return GPT(layers, heads, width, context, vocab, dropout)


# ---------------------------------------------------------------- ViT (torchvision's vit_b_16 layout)


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = CausalSelfAttention(width, heads, 0.0, causal=False)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        layers = [nn.Linear(width, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, width), nn.Dropout(0.0)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class ClassToken(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, width))


class ViT(nn.Module):
    """Patches by a strided conv, a class token, learned positions, pre-norm encoder blocks."""

    def __init__(self, image: int = 224, patch: int = 16, width: int = 768, layers: int = 12, heads: int = 12,
                 mlp: int = 3072, classes: int = 1000):  # fmt: skip
        super().__init__()
        self.conv_proj = nn.Conv2d(3, width, patch, stride=patch)
        self.class_token = ClassToken(width)
        self.pos_embedding = nn.Embedding((image // patch) ** 2 + 1, width)
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(width, heads, mlp) for _ in range(layers)])
        self.ln = nn.LayerNorm(width, eps=1e-6)
        self.heads = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.dropout(x + self.pos_embedding.weight.unsqueeze(0))
        return self.heads(self.ln(self.layers(x))[:, 0])


# ---------------------------------------------------------------- Swin (torchvision's swin_t layout)


def shifted_window_attention(x: torch.Tensor, attn: SwinAttention) -> torch.Tensor:
    """torchvision's shifted_window_attention (no logit scale): pad to whole windows, roll back by
    the shift, attend within each window with the relative position bias and, when shifted, the
    -100 mask between regions the roll brought together; then undo all of it."""
    b, h, w, c = x.shape
    window, heads = attn.window_size, attn.num_heads
    x = F.pad(x, (0, 0, 0, (window[1] - w % window[1]) % window[1], 0, (window[0] - h % window[0]) % window[0]))
    _, pad_h, pad_w, _ = x.shape
    shift = [0 if window[0] >= pad_h else attn.shift_size[0], 0 if window[1] >= pad_w else attn.shift_size[1]]
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    windows = (pad_h // window[0]) * (pad_w // window[1])
    x = x.view(b, pad_h // window[0], window[0], pad_w // window[1], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * windows, window[0] * window[1], c)
    qkv = attn.qkv(x).reshape(x.size(0), x.size(1), 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    scores = scores + attn.relative_position_bias()
    if sum(shift) > 0:
        mask = shift_mask(pad_h, pad_w, window, shift).to(x.device)
        scores = scores.view(x.size(0) // windows, windows, heads, x.size(1), x.size(1))
        scores = (scores + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, x.size(1), x.size(1))
    x = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = attn.proj(x)
    x = x.view(b, pad_h // window[0], pad_w // window[1], window[0], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


def shift_mask(h: int, w: int, window: list[int], shift: list[int]) -> torch.Tensor:
    """torchvision's mask of shifted windows [windows, T, T]: -100 between positions of different
    regions of the rolled image, else 0."""
    mask = torch.zeros(h, w)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for hs in h_slices:
        for ws in w_slices:
            mask[hs[0] : hs[1], ws[0] : ws[1]] = count
            count += 1
    mask = mask.view(h // window[0], window[0], w // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def relative_position_index(window: list[int]) -> torch.Tensor:
    """torchvision's define_relative_position_index: the bias table's row of each pair of window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij"))
    coords = torch.flatten(coords, 1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window[0] - 1
    relative[:, :, 1] += window[1] - 1
    relative[:, :, 0] *= 2 * window[1] - 1
    return relative.sum(-1).flatten()


class SwinAttention(nn.Module):
    """torchvision's ShiftedWindowAttention: qkv, proj, relative_position_bias_table and its index."""

    def __init__(self, dim: int, window: list[int], shift: list[int], heads: int):
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = window, shift, heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))

    def relative_position_bias(self) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_window_attention(x, self)


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth, mode "row"."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep.div_(1.0 - p)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: list[int], shift: list[int], drop: float):
        super().__init__()
        self.drop = drop
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SwinAttention(dim, window, shift, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        layers = [nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim), nn.Dropout(0.0)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + stochastic_depth(self.attn(self.norm1(x)), self.drop, self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.drop, self.training)


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


class SwinTransformer(nn.Module):
    """torchvision's SwinTransformer (v1), module names and initialization included."""

    def __init__(self, embed: int = 96, depths: Sequence[int] = (2, 2, 6, 2), heads: Sequence[int] = (3, 6, 12, 24),
                 window: int = 7, drop_path: float = 0.2, classes: int = 1000):  # fmt: skip
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, embed, 4, stride=4), Permute([0, 2, 3, 1]), nn.LayerNorm(embed, eps=1e-5))
        layers: list[nn.Module] = [stem]
        block_id, total = 0, sum(depths)
        for stage, (depth, n_heads) in enumerate(zip(depths, heads, strict=True)):
            dim, blocks = embed * 2**stage, []
            for i in range(depth):
                shift = [0, 0] if i % 2 == 0 else [window // 2, window // 2]
                blocks.append(SwinBlock(dim, n_heads, [window, window], shift, drop_path * block_id / (total - 1)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if stage < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        width = embed * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(width, eps=1e-5)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(width, classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.avgpool(self.permute(self.norm(self.features(x))))))
