"""A tiny BERT queue classifier the tests build, train for a few seconds on the sample
tickets and save locally: nothing is downloaded. Needs the optional ``ml`` extra."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.classification.support import training_tickets

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
REASON = (
    "the transformers backend needs the optional ml extra: "
    "pip install 'ticketflow-orchestrator[ml]'"
)


def tiny_tokenizer(texts: list[str]) -> Any:
    """A lower-casing word-level tokenizer trained on ``texts``, wrapped for transformers."""
    import tokenizers
    import transformers

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.Sequence(
        [tokenizers.normalizers.NFKC(), tokenizers.normalizers.Lowercase()]
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, tokenizers.trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(name, tok.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=128,
    )


def build_tiny_bert(directory: Path, field: str = "queue") -> Path:
    """A 2-layer, 32-wide BERT classifier of the sample tickets' ``field`` (``queue`` or
    ``priority``), trained for a few seconds and saved with ``save_pretrained`` into
    ``directory``."""
    import torch
    import transformers

    tickets = training_tickets()
    names = [_name(getattr(t, field)) for t in tickets]
    labels = sorted(set(names))
    tokenizer = tiny_tokenizer([t.text for t in tickets])
    torch.manual_seed(0)
    bert = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = transformers.BertForSequenceClassification(bert)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    targets = torch.tensor([labels.index(name) for name in names])
    started = time.perf_counter()
    model.train()
    for _ in range(8):
        for start in range(0, len(tickets), 32):
            batch = [t.text for t in tickets[start : start + 32]]
            encoded = tokenizer(batch, truncation=True, padding=True, return_tensors="pt")
            loss = model(**encoded, labels=targets[start : start + 32]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    print(f"tiny BERT fine-tuned on {len(tickets)} tickets in {time.perf_counter() - started:.1f}s")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _name(value: Any) -> str:
    """A queue as it is, a priority by its label (``high``)."""
    return str(getattr(value, "label", value))
