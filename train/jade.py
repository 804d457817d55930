"""Jade: a BiLSTM masked autoencoder over windows of relativity-10 features.

    X [B, K, D] --(masked bars replaced by a learned vector, + mask-indicator channel)-->
    BiLSTM (hidden 128 per direction, 2 layers) [B, K, 256] --Linear--> reconstruction [B, K, 10]

The loss is Huber (delta 1) on masked and valid bars only, with learnable
uncertainty weighting ``huber / (2 sigma^2) + log sigma``. The old trainer fed
the true values of masked bars to the encoder, so a bidirectional LSTM could
copy its target; here the encoder never sees them (``encoder_input``), which
a test checks by changing X at masked bars and comparing outputs bit for bit.
"""
from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn
from torch.nn import functional as F

from gpu_features.config import FrozenConfig
from gpu_features.errors import GpuFeaturesError


class JadeConfigError(GpuFeaturesError):
    """A JadeConfig field is out of range, unknown or of the wrong type."""


@dataclasses.dataclass(frozen=True)
class JadeConfig(FrozenConfig):
    """Architecture and loss of Jade.

    Attributes:
        n_features: D, features per bar (reconstructed).
        hidden_size: LSTM units per direction.
        num_layers: stacked BiLSTM layers.
        dropout: between LSTM layers. The old default 0.65 was chosen for a few hundred labelled
            windows; masked pretraining sees millions, so a light 0.1 is the default here.
        huber_delta: Huber threshold.
        position_channel: inputs carry a last channel t / (K - 1) (not reconstructed, never hidden).
        uncertainty_weighting: learn log sigma; off gives the plain Huber loss.
    """

    _error = JadeConfigError

    n_features: int = 10
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.1
    huber_delta: float = 1.0
    position_channel: bool = False
    uncertainty_weighting: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.n_features >= 1, "n_features", ">= 1")
        self._check(self.hidden_size >= 1, "hidden_size", ">= 1")
        self._check(self.num_layers >= 1, "num_layers", ">= 1")
        self._check(0.0 <= self.dropout < 1.0, "dropout", "0 <= dropout < 1")
        self._check(self.huber_delta > 0, "huber_delta", "> 0")

    @property
    def input_size(self) -> int:
        """Channels of X: the features, plus the position channel when on."""
        return self.n_features + int(self.position_channel)


class Jade(nn.Module):
    """BiLSTM masked autoencoder; ``Jade(cfg)(X, mask)`` returns the reconstruction ``[B, K, n_features]``."""

    def __init__(self, config: JadeConfig | None = None):
        super().__init__()
        self.config = cfg = config or JadeConfig()
        self.mask_vector = nn.Parameter(torch.zeros(cfg.n_features))
        # + 1: the mask-indicator channel, so "masked" is never confused with a bar whose values equal the mask vector.
        self.encoder = nn.LSTM(cfg.input_size + 1, cfg.hidden_size, cfg.num_layers, batch_first=True,
                               bidirectional=True, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.decoder = nn.Linear(2 * cfg.hidden_size, cfg.n_features)
        self.log_sigma = nn.Parameter(torch.zeros(()), requires_grad=cfg.uncertainty_weighting)
        for name, p in self.encoder.named_parameters():
            if "weight_ih" in name:
                nn.init.xavier_uniform_(p)
            elif "weight_hh" in name:
                nn.init.orthogonal_(p)
            else:
                nn.init.zeros_(p)
        nn.init.xavier_uniform_(self.decoder.weight)
        nn.init.zeros_(self.decoder.bias)

    def encoder_input(self, X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What the LSTM sees: ``[B, K, input_size + 1]``; masked bars carry the learned vector, not their values.

        ``torch.where`` selects, so nothing of X at a masked bar (not even a NaN) reaches the encoder.
        """
        D = self.config.n_features
        feats = X[..., :D]
        hidden = torch.where(mask.unsqueeze(-1), self.mask_vector.to(feats.dtype), feats)
        parts = [hidden]
        if self.config.position_channel:
            parts.append(X[..., D:D + 1])
        parts.append(mask.unsqueeze(-1).to(feats.dtype))
        return torch.cat(parts, dim=-1)

    def encode(self, X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, K, 2 * hidden_size]`` encoder states."""
        out, _ = self.encoder(self.encoder_input(X, mask))
        return out

    def forward(self, X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct every bar.

        Args:
            X: ``[B, K, input_size] float32`` windows.
            mask: ``[B, K] bool``, True at bars to hide and reconstruct.

        Returns:
            ``[B, K, n_features]`` reconstruction.
        """
        return self.decoder(self.encode(X, mask))

    def loss(self, recon: torch.Tensor, X: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor):
        """Uncertainty-weighted Huber loss on masked and valid bars.

        Computed with weights instead of boolean indexing so the GPU never waits for a count.

        Returns:
            ``(total, huber)`` scalars; ``total = huber / (2 sigma^2) + log sigma``
            (``huber`` alone without uncertainty weighting).
        """
        D = self.config.n_features
        target = X[..., :D].float()
        w = (mask & valid).unsqueeze(-1).float()
        elem = F.huber_loss(recon.float(), target, reduction="none", delta=self.config.huber_delta)
        huber = (elem * w).sum() / (w.sum() * D).clamp(min=1.0)
        if not self.config.uncertainty_weighting:
            return huber, huber
        return huber * 0.5 * torch.exp(-2.0 * self.log_sigma) + self.log_sigma, huber

    @property
    def sigma(self) -> float:
        return float(torch.exp(self.log_sigma.detach()))

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder alone (mask vector + LSTM weights), for transfer to a downstream model."""
        out = {"mask_vector": self.mask_vector.detach()}
        out.update({f"lstm.{k}": v.detach() for k, v in self.encoder.state_dict().items()})
        return out

    def metadata(self) -> dict[str, str]:
        """safetensors header metadata: the config as JSON."""
        return {"format": "jade", "jade_config": json.dumps(self.config.to_dict(), sort_keys=True)}
