# %% answer id=accumulate
# averages the micro-batches' mean losses
def accumulate(model, micro_batches):
    total = 0.0
    for b in micro_batches:
        loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss / len(micro_batches)
        loss.backward()
        total += loss.item()
    return total
