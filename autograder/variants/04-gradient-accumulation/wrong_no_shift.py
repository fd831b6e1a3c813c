# %% answer id=count_targets
def count_targets(labels):
    return int((labels != -100).sum())
# %% answer id=accumulate
# forgets the shift: position t is scored against token t
def accumulate(model, micro_batches):
    n = sum(count_targets(b["labels"]) for b in micro_batches)
    total = 0.0
    for b in micro_batches:
        logits = model(input_ids=b["input_ids"]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), b["labels"].reshape(-1), ignore_index=-100,
                               reduction="sum") / n
        loss.backward()
        total += loss.item()
    return total
