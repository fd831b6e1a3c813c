# %% answer id=token_f1
# removes the articles with a word boundary only after them, so a word that ends in "a", "an" or "the" loses its
# ending ("pizza" -> "pizz", "japan" -> "jap", "soothe" -> "soo"). Only the hidden texts with such words catch it
# (the notebook's texts and the random answers have none).
def normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction, reference):
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
