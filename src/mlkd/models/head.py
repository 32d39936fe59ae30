"""Classification heads on top of the backbone's final feature map.

``label_wise`` (the paper's g + h_k, ML-Decoder style) and ``linear`` (global pool + fc).
Both return a ``HeadOutput(logits [B,q], label_embeddings [B,q,D] | None, attention [B,q,T] | None)``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mlkd.registries import HEADS


class HeadOutput(NamedTuple):
    logits: torch.Tensor
    label_embeddings: Optional[torch.Tensor]
    attention: Optional[torch.Tensor]


def to_tokens(feats: torch.Tensor) -> torch.Tensor:
    """[B,C,h,w] -> [B,T=h*w,C] (row-major over h, w); [B,T,C] passes through."""
    return feats.flatten(2).transpose(1, 2) if feats.ndim == 4 else feats


@HEADS.register("label_wise")
class LabelWiseHead(nn.Module):
    """Label-wise embedding encoder g and per-class classifiers h_k, the paper's head (an
    ML-Decoder-style decoder with one query per class).

    tokens [B,T,C] -> Linear(C,D) + ReLU = memory M [B,T,D]. One decoder layer, no
    self-attention, q class queries Q (``nn.Embedding(q, D)``, frozen random unless
    ``learnable_queries``):
        Q' = LayerNorm(Q + Dropout(Q))   # ML-Decoder's stand-in for self-attention
        A  = LayerNorm(Q' + Dropout(MHA(Q', M, M)))         # num_heads, dropout
        E  = LayerNorm(A + Dropout(FFN(A)))                  # D -> ffn_dim -> D, ReLU
    logits z_k = <E_k, w_k> + b_k, with w [q,D] (Xavier-normal) and b [q] (zeros).

    The Q' step is what ML-Decoder (and the official L2D code built on it) runs in place of
    self-attention; it only normalises the (frozen) queries.

    Set ``keep_attention = True`` (or pass ``return_attention=True``) to also get the
    cross-attention weights [B,q,T] averaged over heads (through ``nn.MultiheadAttention``);
    otherwise one ``F.scaled_dot_product_attention`` call (``cross_attend``) computes the same
    attention with the same parameters, in training and evaluation. Request the weights in eval
    mode: in train mode they are the dropped-out weights.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        embed_dim: int = 768,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        learnable_queries: bool = False,
    ):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.proj = nn.Linear(in_dim, embed_dim)
        self.query_embed = nn.Embedding(num_classes, embed_dim)
        self.query_embed.requires_grad_(learnable_queries)
        self.query_dropout = nn.Dropout(dropout)
        self.query_norm = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn_dim, embed_dim)
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.class_weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        self.class_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.class_weight)
        self.keep_attention = False

    @property
    def learnable_queries(self) -> bool:
        return self.query_embed.weight.requires_grad

    def embed(self, feats: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """feats [B,C,h,w] or [B,T,C] -> (E [B,q,D], attention [B,q,T] or None)."""
        memory = F.relu(self.proj(to_tokens(feats)))
        query = self.query_embed.weight.unsqueeze(0).expand(memory.shape[0], -1, -1).to(memory.dtype)
        query = self.query_norm(query + self.query_dropout(query))
        if return_attention:
            context, attn = self.attn(query, memory, memory, need_weights=True, average_attn_weights=True)
        else:
            context, attn = self.cross_attend(query, memory), None
        emb = self.norm1(query + self.dropout1(context))
        emb = self.norm2(emb + self.dropout2(self.ffn(emb)))
        return emb, (attn if return_attention else None)

    def cross_attend(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``self.attn(query, memory, memory)`` without its weights, through one
        ``F.scaled_dot_product_attention`` call (fused kernels where the device has them; the
        MHA's own parameters and dropout). query [B,q,D], memory [B,T,D] -> [B,q,D]."""
        mha, dim = self.attn, self.embed_dim
        heads = mha.num_heads
        q = F.linear(query, mha.in_proj_weight[:dim], mha.in_proj_bias[:dim])
        k, v = F.linear(memory, mha.in_proj_weight[dim:], mha.in_proj_bias[dim:]).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, dim // heads)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if self.training else 0.0)
        return mha.out_proj(out.transpose(1, 2).flatten(2))

    def classify(self, emb: torch.Tensor) -> torch.Tensor:
        """E [B,q,D] -> logits [B,q]: z_k = <E_k, w_k> + b_k (one einsum)."""
        return torch.einsum("bqd,qd->bq", emb, self.class_weight.to(emb.dtype)) + self.class_bias.to(emb.dtype)

    def forward(
        self, feats: torch.Tensor, pooled: Optional[torch.Tensor] = None, return_attention: Optional[bool] = None
    ) -> HeadOutput:
        """feats [B,C,h,w] or [B,T,C] (pooled unused) -> HeadOutput."""
        want = self.keep_attention if return_attention is None else return_attention
        emb, attn = self.embed(feats, return_attention=bool(want))
        return HeadOutput(self.classify(emb), emb, attn)


@HEADS.register("linear")
class LinearHead(nn.Module):
    """Global-average-pooled feature [B,F] -> fc -> logits [B,q]; no label embeddings."""

    def __init__(self, in_dim: int, num_classes: int, **_: object):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_dim, num_classes)
        self.keep_attention = False

    def forward(
        self, feats: torch.Tensor, pooled: Optional[torch.Tensor] = None, return_attention: Optional[bool] = None
    ) -> HeadOutput:
        if pooled is None:
            pooled = to_tokens(feats).mean(1)
        return HeadOutput(self.fc(pooled), None, None)
