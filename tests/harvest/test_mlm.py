"""BERT's masking (15%, then 80/10/10) and the masked-LM loss in luminary.train.losses."""

import torch

from luminary.train.labels import IGNORE
from luminary.train.losses import mask_tokens, masked_lm_collate, masked_lm_loss


def test_masking_rates_are_berts_and_special_tokens_are_never_targets():
    ids = torch.randint(3, 1000, (200_000,), generator=torch.Generator().manual_seed(1))
    ids[::10] = 0  # a special token
    inputs, labels = mask_tokens(ids, mask_id=1, vocab_size=1000, generator=torch.Generator().manual_seed(0),
                                 special_ids={0})
    target = labels != IGNORE
    assert not target[::10].any()
    assert abs(target.float().mean().item() / 0.9 - 0.15) < 0.005
    assert torch.equal(labels[target], ids[target])
    masked = (inputs[target] == 1).float().mean().item()
    kept = (inputs[target] == ids[target]).float().mean().item()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1 - 0.001) < 0.01  # a random token may equal the original
    assert torch.equal(inputs[~target], ids[~target])


def test_collate_is_seeded_per_example_and_pads():
    examples = [list(range(5, 45)), list(range(50, 70))]
    a = masked_lm_collate(examples, mask_id=1, vocab_size=100, pad_id=0, seed=3)
    b = masked_lm_collate(examples[::-1], mask_id=1, vocab_size=100, pad_id=0, seed=3)
    assert torch.equal(a["input_ids"][1, :20], b["input_ids"][0, :20])  # same example, same masks, any batch
    assert not torch.equal(a["labels"], masked_lm_collate(examples, 1, 100, 0, seed=4)["labels"])
    assert a["attention_mask"][1].sum() == 20 and (a["labels"][1, 20:] == IGNORE).all()


def test_loss_is_the_mean_over_targets_only():
    class Table(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": torch.nn.functional.one_hot(input_ids, 8).float() * 2.0})()

    batch = {"input_ids": torch.tensor([[3, 1, 4]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
             "labels": torch.tensor([[IGNORE, 5, 4]])}
    out = masked_lm_loss(Table(), batch)
    logp = torch.log_softmax(torch.nn.functional.one_hot(torch.tensor([1, 4]), 8).float() * 2.0, -1)
    assert out["count"] == 2
    assert torch.isclose(out["loss"], -(logp[0, 5] + logp[1, 4]) / 2)
