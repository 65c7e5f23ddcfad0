"""The shipped language-model specs against hand-written PyTorch twins given the same weights:
exact parameter counts (by PyTorch's formulas) and equal outputs in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.actions.model import build_model
from netcfg.building.builder import sample_inputs
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS


class RNNModel(nn.Module):
    """PyTorch's word_language_model example (batch first), decoder tied to the encoder."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(self.encoder(ids)))
        return self.decoder(self.drop(out))


def lstm_parameters(vocab: int, emb: int, hidden: int, layers: int) -> int:
    """V*E embedding (the decoder's weight too), per layer 4H(F + H) + 8H, the decoder's bias V."""
    features = [emb] + [hidden] * (layers - 1)
    return vocab * emb + sum(4 * hidden * (f + hidden) + 8 * hidden for f in features) + vocab


def test_lstm_lm_counts_by_formula_and_computes_as_pytorchs_example():
    assert load_spec(str(CONFIGS / "lstm_lm.yaml")) is not None
    built = build_model(load_spec(str(CONFIGS / "lstm_lm.yaml"), ["vars.vocab=300", "vars.emb=48", "vars.hidden=48"]))
    model = built.model.eval()
    assert sum(p.numel() for p in model.parameters()) == lstm_parameters(300, 48, 48, 2)
    twin = RNNModel(300, 48, 48, 2, 0.5).eval()
    twin.load_state_dict(model.state_dict())  # the same names: the example's checkpoints load as they are
    (ids,) = sample_inputs(built.spec)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), twin(ids), rtol=0, atol=1e-5)


def test_lstm_lm_full_size_count():
    meta = build_model(load_spec(str(CONFIGS / "lstm_lm.yaml")), device="meta")
    assert sum(p.numel() for p in meta.model.parameters()) == lstm_parameters(10000, 650, 650, 2) == 13_280_400
