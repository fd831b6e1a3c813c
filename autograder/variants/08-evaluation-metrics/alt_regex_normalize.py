# %% answer id=token_f1
def normalize(text):
    text = re.sub(f"[{re.escape(string.punctuation)}]", "", text.lower())
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def token_f1(prediction, reference):
    p, r = Counter(normalize(prediction).split()), Counter(normalize(reference).split())
    if not p or not r:
        return 1.0 if p == r else 0.0
    same = sum(min(p[w], r[w]) for w in p)
    return 0.0 if same == 0 else 2 * same / (sum(p.values()) + sum(r.values()))
