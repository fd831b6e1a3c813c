# %% answer id=accumulate
# uses the model's own mean loss, re-weighted by each micro-batch's share of the window's targets
def accumulate(model, micro_batches):
    counts = [count_targets(b["labels"]) for b in micro_batches]
    n = sum(counts)
    total = 0.0
    for b, k in zip(micro_batches, counts):
        loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss * (k / n)
        loss.backward()
        total += loss.item()
    return total
