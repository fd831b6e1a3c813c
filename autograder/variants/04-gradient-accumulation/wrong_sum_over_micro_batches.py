# %% answer id=accumulate
# sums the token losses but divides by the number of micro-batches
def accumulate(model, micro_batches):
    total = 0.0
    for b in micro_batches:
        logits = model(input_ids=b["input_ids"]).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1),
                               ignore_index=-100, reduction="sum") / len(micro_batches)
        loss.backward()
        total += loss.item()
    return total
