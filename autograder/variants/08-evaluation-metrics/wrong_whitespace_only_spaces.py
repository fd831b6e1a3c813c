# %% answer id=token_f1
# collapses runs of spaces only: tabs and newlines stay in the normalised text ("new\tyork"), which SQuAD's
# normalisation turns into single spaces. token_f1 splits on any whitespace, so only normalize's hidden texts with
# tabs or newlines catch it.
def normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return re.sub(r" +", " ", text).strip(" ")


def token_f1(prediction, reference):
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
