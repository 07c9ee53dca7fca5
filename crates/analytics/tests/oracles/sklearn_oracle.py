"""scikit-learn's answers for the readmission model's oracle test.

    python sklearn_oracle.py TRAIN.csv SCORES.csv OUTPUT.json C

TRAIN.csv: y then the standardised feature columns; SCORES.csv: y,score. OUTPUT.json: the
intercept and coefficients of LogisticRegression(penalty="l2", C=C) fitted to TRAIN.csv, and
roc_auc_score on SCORES.csv.
"""
import json
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

train, scores, target, c = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
data = np.loadtxt(train, delimiter=",", skiprows=1, ndmin=2)
y, x = data[:, 0].astype(int), data[:, 1:]
model = LogisticRegression(penalty="l2", C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000)
model.fit(x, y)
scored = np.loadtxt(scores, delimiter=",", skiprows=1, ndmin=2)
json.dump(
    {
        "version": sklearn.__version__,
        "intercept": float(model.intercept_[0]),
        "coefficients": [float(v) for v in model.coef_[0]],
        "auc": float(roc_auc_score(scored[:, 0].astype(int), scored[:, 1])),
    },
    open(target, "w"),
)
