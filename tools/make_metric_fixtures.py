#!/usr/bin/env python3
"""Makes the metric parity fixtures in test/fixtures/metrics/.

Writes, for each fixture, a TREC qrels file and a TREC run file, then asks ir_measures (with
pytrec_eval) for per-query and mean values and stores them in expected.json, which
test/eval/metrics.test.ts compares Winnow's metrics against. Everything is generated from a
fixed seed or from literal text below, so rerunning produces byte-identical files.

    python3 -m venv .venv/tools && .venv/tools/bin/pip install -r tools/requirements-tools.txt
    .venv/tools/bin/python tools/make_metric_fixtures.py
"""
import json
import os
import random
import sys

import ir_measures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'metrics')
COMMAND = '.venv/tools/bin/python tools/make_metric_fixtures.py'

MEASURES = [
    'RR@10', 'RR', 'nDCG@10', 'nDCG@5', 'nDCG@100', 'nDCG', 'R@5', 'R@100', 'P@5', 'P@10',
    'AP', 'AP@10', 'Judged@10', 'R(rel=2)@5', 'R(rel=2)@100', 'P(rel=2)@5', 'P(rel=2)@10',
    'AP(rel=2)', 'RR(rel=2)', 'RR(rel=2)@10',
]


def synthetic(seed, n_queries, n_docs):
    """Graded qrels (0..4) and a run whose scores are rounded to one decimal so ties are common.

    Doc ids mix lengths ('d7', 'd12', 'd105') so string order differs from numeric order, and
    tie-breaking by id is visible. Some queries are judged only 0, one qrels query has no run
    entries, two run queries have no qrels, and some queries retrieve fewer than 10 docs.
    """
    rng = random.Random(seed)
    qrels, run = [], []
    for q in range(n_queries):
        qid = f'q{q}'
        docs = [f'd{i}' for i in rng.sample(range(1, n_docs), 40)]
        judged = docs[:rng.randint(3, 25)]
        all_zero = q % 7 == 3
        for d in judged:
            rel = 0 if all_zero else rng.choice([0, 0, 0, 1, 1, 2, 3, 4])
            qrels.append((qid, d, rel))
        if q == 5:
            continue  # a qrels query the run never mentions
        depth = rng.choice([3, 7, 30]) if q % 4 == 1 else rng.randint(12, 40)
        retrieved = rng.sample(docs, min(depth, len(docs)))
        for rank, d in enumerate(retrieved, 1):
            run.append((qid, d, rank, round(rng.random() * 2, 1)))
    for q in ('extra1', 'extra2'):
        for rank, d in enumerate(rng.sample(range(1, n_docs), 5), 1):
            run.append((q, f'd{d}', rank, round(rng.random(), 2)))
    return qrels, run


def fmt_qrels(rows):
    return ''.join(f'{q} 0 {d} {r}\n' for q, d, r in rows)


def fmt_run(rows):
    return ''.join(f'{q} Q0 {d} {rank} {score} fixture\n' for q, d, rank, score in rows)


# Hand-written cases. The rank column deliberately disagrees with the scores in places: it
# must be ignored.
TIES_QRELS = """\
t1 0 a 1
t1 0 z 0
t2 0 a 0
t2 0 b 2
t2 0 m 1
t3 0 x 3
t3 0 y 1
"""
TIES_RUN = """\
t1 Q0 a 1 5.0 tie
t1 Q0 m 2 5.0 tie
t1 Q0 z 3 5.0 tie
t1 Q0 b 4 5.0 tie
t2 Q0 a 1 1.5 tie
t2 Q0 b 2 1.5 tie
t2 Q0 c 3 1.5 tie
t2 Q0 m 4 0.5 tie
t3 Q0 y 1 2 tie
t3 Q0 x 2 2.0 tie
t3 Q0 w 3 2 tie
"""

EDGE_QRELS = """\
e1 0 good 2
e1 0 bad -1
e1 0 meh 0
e1 0 ok 1
e2 0 a 0
e2 0 b 0
e3 0 only 1
e4 0 D10 1
e4 0 d9 2
e4 0 d10 4
"""
# e1: a negative judgement ranked first; e2: judged, none relevant; e3: not in the run;
# e4: ids that differ by case and length; 'stray': in the run only. Duplicate pairs: the
# later line wins in ir_measures (it builds a dict).
EDGE_RUN = """\
e1 Q0 bad 9 3.0 edge
e1 Q0 meh 1 2.5 edge
e1 Q0 unjudged 2 2.25 edge
e1 Q0 good 3 1e-3 edge
e1 Q0 ok 4 -4 edge
e2 Q0 a 1 1 edge
e2 Q0 c 2 0.5 edge
e4 Q0 d10 1 0.5 edge
e4 Q0 D10 2 0.5 edge
e4 Q0 d9 3 0.5 edge
e4 Q0 d1 4 0.5 edge
e4 Q0 d9 5 0.75 edge
e1 Q0 ok 6 2.75 edge
stray Q0 good 1 1 edge
"""


def evaluate(qrels_path, run_path):
    measures = [ir_measures.parse_measure(m) for m in MEASURES]
    qrels = list(ir_measures.read_trec_qrels(qrels_path))
    run = list(ir_measures.read_trec_run(run_path))
    result = ir_measures.calc(measures, qrels, run)
    per_query = {}
    for metric in result.per_query:
        per_query.setdefault(metric.query_id, {})[str(metric.measure)] = float(metric.value)
    return {
        'mean': {str(m): float(v) for m, v in result.aggregated.items()},
        'perQuery': per_query,
    }


def main():
    for m in MEASURES:
        if str(ir_measures.parse_measure(m)) != m:
            sys.exit(f'measure name {m} is not canonical: {ir_measures.parse_measure(m)}')
    fixtures = {}
    q1, r1 = synthetic(seed=20240611, n_queries=24, n_docs=120)
    fixtures['synthetic'] = (fmt_qrels(q1), fmt_run(r1))
    q2, r2 = synthetic(seed=7, n_queries=10, n_docs=60)
    fixtures['synthetic_small'] = (fmt_qrels(q2), fmt_run(r2))
    fixtures['ties'] = (TIES_QRELS, TIES_RUN)
    fixtures['edge'] = (EDGE_QRELS, EDGE_RUN)

    expected = {
        'generator': COMMAND,
        'ir_measures': ir_measures.__version__,
        'measures': MEASURES,
        'fixtures': {},
    }
    for name, (qrels_text, run_text) in fixtures.items():
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        qrels_path = os.path.join(folder, 'qrels.txt')
        run_path = os.path.join(folder, 'run.txt')
        with open(qrels_path, 'w', newline='\n') as f:
            f.write(qrels_text)
        with open(run_path, 'w', newline='\n') as f:
            f.write(run_text)
        values = evaluate(qrels_path, run_path)
        expected['fixtures'][name] = {
            'qrels': f'{name}/qrels.txt',
            'run': f'{name}/run.txt',
            **values,
        }
    with open(os.path.join(OUT, 'expected.json'), 'w', newline='\n') as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write('\n')
    print(f'wrote {len(fixtures)} fixtures to {os.path.relpath(OUT, ROOT)}')


if __name__ == '__main__':
    main()
