"""Hand-written PyTorch models with the module names, shapes and layouts of published checkpoints,
at any width: torchvision's ResNet and ViT, Hugging Face's GPT-2 and Llama.

Written from the reference implementations (torchvision.models.resnet / vision_transformer,
transformers' modeling_gpt2 / modeling_llama), with none of their packages: their `state_dict()`
has the same keys, shapes, dtypes and layouts as the published files (GPT-2's Conv1D weights
stored [in, out], nn.MultiheadAttention's fused in_proj, Llama's separate q/k/v in rotate-half
order), so a file saved from one is a small stand-in for the real checkpoint. Plain PyTorch,
no netcfg import: the tests compare netcfg's models, loaded through the key maps, with these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------- torchvision ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4  # torchvision's v1.5: the stride sits on the 3x3 convolution

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchvisionResNet(nn.Module):
    """torchvision.models.ResNet with stem width `stem` and stage widths `planes`."""

    def __init__(self, block: str, layers: tuple, planes: tuple = (64, 128, 256, 512), stem: int = 64,
                 classes: int = 1000):  # fmt: skip
        super().__init__()
        kind = BasicBlock if block == "basic" else Bottleneck
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (width, blocks) in enumerate(zip(planes, layers, strict=True)):
            setattr(self, f"layer{i + 1}", self._stage(kind, width, blocks, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[-1] * kind.expansion, classes)

    def _stage(self, kind, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * kind.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * kind.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * kind.expansion))  # fmt: skip
        layers = [kind(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * kind.expansion
        layers += [kind(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- torchvision ViT


class TorchvisionEncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, width),
                                 nn.Dropout(0.0))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class TorchvisionEncoder(nn.Module):
    def __init__(self, length: int, layers: int, width: int, heads: int, mlp: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, length, width).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential()
        for i in range(layers):
            self.layers.add_module(f"encoder_layer_{i}", TorchvisionEncoderBlock(width, heads, mlp))
        self.ln = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TorchvisionViT(nn.Module):
    """torchvision.models.VisionTransformer (no representation layer)."""

    def __init__(self, image: int, patch: int, layers: int, heads: int, width: int, mlp: int, classes: int):
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, width, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = TorchvisionEncoder((image // patch) ** 2 + 1, layers, width, heads, mlp)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.conv_proj.out_channels, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


# ---------------------------------------------------------------- Hugging Face GPT-2


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class GPT2Attention(nn.Module):
    def __init__(self, width: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(3 * width, width)
        self.c_proj = Conv1D(width, width)
        mask = torch.tril(torch.ones(context, context, dtype=torch.bool)).view(1, 1, context, context)
        self.register_buffer("bias", mask)  # the causal mask older GPT-2 files hold
        self.register_buffer("masked_bias", torch.tensor(-1e4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(n, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~self.bias[:, :, :t, :t], torch.finfo(scores.dtype).min)
        y = scores.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(n, t, d))


class GPT2MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = Conv1D(4 * width, width)
        self.c_proj = Conv1D(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))  # gelu_new
        return self.c_proj(h)


class GPT2Block(nn.Module):
    def __init__(self, width: int, heads: int, context: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = GPT2Attention(width, heads, context)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = GPT2MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """transformers' GPT2Model: keys wte, wpe, h.N.*, ln_f (the published gpt2 model.safetensors)."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(GPT2Block(width, heads, context) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, eps=1e-5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """transformers' GPT2LMHeadModel: `transformer.*` and `lm_head.weight`, tied to wte."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.transformer = GPT2Model(vocab, context, width, layers, heads)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.transformer(ids))


# ---------------------------------------------------------------- Hugging Face Llama


class LlamaRMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-second, first), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, width: int, heads: int, kv_heads: int, base: float = 10000.0):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, width // heads
        self.q_proj = nn.Linear(width, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, width, bias=False)
        inv_freq = 1.0 / (base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.rotary_emb = nn.Module()  # older transformers saved its buffer: self_attn.rotary_emb.inv_freq
        self.rotary_emb.register_buffer("inv_freq", inv_freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q = self.q_proj(x).view(n, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.rotary_emb.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        groups = self.heads // self.kv_heads  # repeat_kv
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        y = scores.masked_fill(causal, float("-inf")).softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(n, t, -1))


class LlamaMLP(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.gate_proj = nn.Linear(width, ffn, bias=False)
        self.up_proj = nn.Linear(width, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, kv_heads: int, ffn: int, eps: float):
        super().__init__()
        self.self_attn = LlamaAttention(width, heads, kv_heads)
        self.mlp = LlamaMLP(width, ffn)
        self.input_layernorm = LlamaRMSNorm(width, eps)
        self.post_attention_layernorm = LlamaRMSNorm(width, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, heads: int, kv_heads: int, ffn: int, eps: float):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(LlamaDecoderLayer(width, heads, kv_heads, ffn, eps) for _ in range(layers))
        self.norm = LlamaRMSNorm(width, eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """transformers' LlamaForCausalLM: model.* and an untied lm_head."""

    def __init__(self, vocab: int, width: int, layers: int, heads: int, kv_heads: int, ffn: int, eps: float = 1e-5):
        super().__init__()
        self.model = LlamaModel(vocab, width, layers, heads, kv_heads, ffn, eps)
        self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model(ids))


# ---------------------------------------------------------------- helpers


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Every floating tensor of the state (batch-norm statistics included) random, so that a
    tensor that is not loaded, or loaded into the wrong place, shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("inv_freq"):
                values = torch.randn(tensor.shape, generator=generator) * 0.2
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
    return model.eval()
