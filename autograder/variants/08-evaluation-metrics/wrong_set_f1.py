# %% answer id=token_f1
# token sets instead of multisets, and no normalisation of articles
def normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(text.split())


def token_f1(prediction, reference):
    pred, ref = set(normalize(prediction).split()), set(normalize(reference).split())
    if not pred or not ref:
        return float(pred == ref)
    common = len(pred & ref)
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)
