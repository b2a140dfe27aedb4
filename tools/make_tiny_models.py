#!/usr/bin/env python3
"""Makes the tiny neural-model fixtures in test/fixtures/models/.

Builds four randomly initialised (fixed seeds) models in Hugging Face folder layout, exports
each to ONNX and records what the Python reference stack says about fixed inputs in
expected.json, which test/models/*.test.ts and test/rerank/*.test.ts compare Winnow against:

  tiny-bert-ce   BertForSequenceClassification, num_labels=1, WordPiece tokenizer
                 (+ onnx/model_quantized.onnx, dynamic int8)
  tiny-bert-bi   BertModel as a sentence-transformers bi-encoder (mean pooling + Normalize);
                 the ONNX graph outputs last_hidden_state, pooling happens in Winnow
  tiny-xlmr-ce   XLMRobertaForSequenceClassification, num_labels=2, Unigram tokenizer
  tiny-colbert   ColBERT: BERT + Linear(32 -> 16, no bias). The projection is inside the ONNX
                 graph (output `contextual` [b, t, 16]), the layout of the common ONNX exports
                 of colbert-ir/colbertv2.0 and answerai-colbert-small-v1; colbert-ai settings
                 (query_maxlen, doc_maxlen, markers, mask_punctuation) are in artifact.metadata.

Tokenizers are trained with the `tokenizers` library on the first documents of the SciFact
corpus (tooling only; the fixtures do not depend on it at test time). Everything is seeded,
so rerunning produces the same weights and the same expected.json.

    python3 -m venv .venv/models && .venv/models/bin/pip install -r tools/requirements-models.txt
    .venv/models/bin/python tools/make_tiny_models.py
"""
import json
import math
import os

# the trainers are multi-threaded; one thread makes the learned vocabularies reproducible
os.environ['RAYON_NUM_THREADS'] = '1'
os.environ['TOKENIZERS_PARALLELISM'] = 'false'
import random
import shutil
import string

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'models')
CORPUS = os.path.join(os.path.dirname(ROOT), 'shared', 'datasets', 'scifact', 'corpus.jsonl')
COMMAND = '.venv/models/bin/python tools/make_tiny_models.py'
MAX_LEN = 48
OPSET = 17


def seed(n):
    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)


def training_text(n_docs=400):
    out = []
    with open(CORPUS, encoding='utf-8') as f:
        for i, line in enumerate(f):
            if i >= n_docs:
                break
            d = json.loads(line)
            out.append(d.get('title', '') + ' ' + d['text'])
    # a few non-ASCII lines so accents and CJK characters have a chance to be in the vocab
    out += ['Café naïve résumé Ünïcödé', '日本語のテキスト 中文 文本', 'Ελληνικά кириллица']
    return out


LONG = None  # set in main: a real document longer than MAX_LEN tokens


def inputs():
    queries = ['what causes cancer?', 'Vitamin D deficiency and bone density']
    docs = [
        LONG,
        ' ',
        'a',
        '',
        'Café naïve résumé — Ünïcödé accents',
        '日本語のテキスト 中文',
        'emoji 😀🚀 test, with punctuation!',
        'Short doc about cancer cells.',
        'Vitamin D levels were measured in 120 patients; bone mineral density increased.',
    ]
    return queries, docs


# ---------------------------------------------------------------------------- tokenizers

def wordpiece_tokenizer(texts):
    special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused0]', '[unused1]']
    tok = Tokenizer(models.WordPiece(unk_token='[UNK]'))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=1500, special_tokens=special, min_frequency=2)
    tok.train_from_iterator(texts, trainer)
    # the trainer orders its alphabet by hash-map iteration; renumber canonically (WordPiece
    # matching does not depend on ids) so reruns write the same tokenizer.json
    vocab = tok.get_vocab()
    order = special + sorted(t for t in vocab if t not in special)
    tok.model = models.WordPiece({t: i for i, t in enumerate(order)}, unk_token='[UNK]')
    cls, sep = tok.token_to_id('[CLS]'), tok.token_to_id('[SEP]')
    tok.post_processor = processors.TemplateProcessing(
        single='[CLS] $A [SEP]', pair='[CLS] $A [SEP] $B:1 [SEP]:1',
        special_tokens=[('[CLS]', cls), ('[SEP]', sep)])
    from transformers import BertTokenizerFast
    return BertTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN, unk_token='[UNK]',
                             sep_token='[SEP]', pad_token='[PAD]', cls_token='[CLS]', mask_token='[MASK]')


def unigram_tokenizer(texts, wordpiece):
    """A SentencePiece-style Unigram tokenizer. The Unigram trainer is not reproducible across
    runs, so the pieces come from the (canonical) WordPiece vocabulary and each piece's score
    is its log relative frequency in the training text: a real unigram LM, built deterministically."""
    special = ['<s>', '<pad>', '</s>', '<unk>']
    corpus = '▁' + '▁'.join(' '.join(texts).split())
    pieces = set()
    for t in wordpiece.get_vocab():
        if t.startswith('[') and t.endswith(']'):
            continue
        pieces.add(t[2:] if t.startswith('##') else '▁' + t)
        pieces.update(t.lstrip('#'))
    pieces.add('▁')
    counts = {p: corpus.count(p) + 1 for p in pieces}
    total = sum(counts.values())
    rest = sorted(((p, round(math.log(c / total), 6)) for p, c in counts.items()), key=lambda x: (-x[1], x[0]))
    vocab = [(p, 0.0) for p in special] + rest
    tok = Tokenizer(models.Unigram(vocab, unk_id=special.index('<unk>'), byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Replace(Regex(' {2,}'), ' ')])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement='▁', prepend_scheme='always')
    tok.decoder = decoders.Metaspace(replacement='▁', prepend_scheme='always')
    tok.add_special_tokens(['<mask>'])
    bos, eos = tok.token_to_id('<s>'), tok.token_to_id('</s>')
    # the template XLM-R's own tokenizer.json uses
    tok.post_processor = processors.TemplateProcessing(
        single='<s> $A </s>', pair='<s> $A </s> </s> $B </s>',
        special_tokens=[('<s>', bos), ('</s>', eos)])
    from transformers import XLMRobertaTokenizerFast
    return XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN, bos_token='<s>',
                                   eos_token='</s>', sep_token='</s>', cls_token='<s>', unk_token='<unk>',
                                   pad_token='<pad>', mask_token='<mask>')


def tokenizer_expectations(tok, queries, docs):
    """ids/masks/types from the Rust `tokenizers` library, single texts and query-document pairs.

    The Rust tokenizer is the reference, not the transformers wrapper: transformers 5 drops
    whitespace-only texts (' ' -> nothing) and treats an empty second text as no pair at all.
    """
    rust = Tokenizer.from_str(tok.backend_tokenizer.to_str())

    def enc(a, b=None, strategy='longest_first', max_length=MAX_LEN):
        if max_length is None:
            rust.no_truncation()
        else:
            rust.enable_truncation(max_length, strategy=strategy)
        e = rust.encode(a, b) if b is not None else rust.encode(a)
        return {'input_ids': e.ids, 'attention_mask': e.attention_mask, 'token_type_ids': e.type_ids}

    texts = queries + docs
    return {
        'maxLength': MAX_LEN,
        'single': [{'text': t, **enc(t)} for t in texts],
        'singleNoTruncation': [{'text': t, **enc(t, max_length=None)} for t in texts],
        'pairsOnlySecond': [{'query': q, 'doc': d, **enc(q, d, 'only_second')} for q in queries for d in docs],
        'pairsLongestFirst': [{'query': q, 'doc': d, **enc(q, d)} for q in queries for d in docs],
        # long queries exercise the shortest/longest split of longest_first
        'pairsLongQuery': [{'query': q, 'doc': d, **enc(q, d)}
                           for q, d in [(LONG, 'a'), (LONG, LONG), (LONG[:150], LONG), ('a', LONG[:120])]],
    }


def rust_pair_logits(tok, model, pairs):
    """Logits of the torch model on the Rust tokenizer's pair encodings (longest_first)."""
    rust = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    rust.enable_truncation(MAX_LEN, strategy='longest_first')
    out = []
    for q, d in pairs:
        e = rust.encode(q, d)
        ids = torch.tensor([e.ids])
        kw = {'token_type_ids': torch.tensor([e.type_ids])} if 'token_type_ids' in tok.model_input_names else {}
        with torch.no_grad():
            out.append(model(input_ids=ids, attention_mask=torch.ones_like(ids), **kw).logits[0].double().tolist())
    return out


def transformers_agrees(ce, tok, pairs):
    """Whether CrossEncoder's own encoding of a pair equals the Rust tokenizer's (it strips
    whitespace-only texts, so ' ' scores like '')."""
    rust = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    rust.enable_truncation(MAX_LEN, strategy='longest_first')
    return [ce[0].preprocess([(q, d)])['input_ids'][0].tolist() == rust.encode(q, d).ids for q, d in pairs]


# ---------------------------------------------------------------------------- export

def export(model, folder, input_names, output_names, dyn_out):
    os.makedirs(os.path.join(folder, 'onnx'), exist_ok=True)
    model.eval()
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    feeds = {'input_ids': ids, 'attention_mask': mask}
    if 'token_type_ids' in input_names:
        feeds['token_type_ids'] = torch.zeros_like(ids)
    args = tuple(feeds[n] for n in input_names)
    dynamic = {n: {0: 'batch', 1: 'sequence'} for n in input_names}
    dynamic.update(dyn_out)
    kwargs = {}
    if 'dynamo' in torch.onnx.export.__code__.co_varnames:
        kwargs['dynamo'] = False  # the TorchScript exporter names outputs the way optimum does
    torch.onnx.export(model, args, os.path.join(folder, 'onnx', 'model.onnx'), input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic, opset_version=OPSET,
                      do_constant_folding=True, **kwargs)


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {} if token_type_ids is None else {'token_type_ids': token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits


class Hidden(torch.nn.Module):
    def __init__(self, model, linear=None):
        super().__init__()
        self.model = model
        self.linear = linear

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return h if self.linear is None else self.linear(h)


def bert_config(vocab_size, **kw):
    from transformers import BertConfig
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, type_vocab_size=2, **kw)


def clean(folder):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)


def scaled_init(model, seed_value):
    # random init with std 0.02 gives near-constant outputs; widen it so scores differ clearly
    seed(seed_value)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)


# ---------------------------------------------------------------------------- models

def make_bert_ce(tok, queries, docs):
    from transformers import BertForSequenceClassification
    from sentence_transformers import CrossEncoder
    folder = os.path.join(OUT, 'tiny-bert-ce')
    clean(folder)
    seed(1)
    model = BertForSequenceClassification(bert_config(len(tok), num_labels=1))
    scaled_init(model, 1)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    export(Logits(model), folder, ['input_ids', 'attention_mask', 'token_type_ids'], ['logits'],
           {'logits': {0: 'batch'}})
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(os.path.join(folder, 'onnx', 'model.onnx'), os.path.join(folder, 'onnx', 'model_quantized.onnx'),
                     weight_type=QuantType.QInt8)
    os.remove(os.path.join(folder, 'model.safetensors'))
    ce = CrossEncoder_load(folder, model)
    pairs = [(q, d) for q in queries for d in docs]
    model.eval()
    return {
        'pairs': [list(p) for p in pairs],
        'transformersAgrees': transformers_agrees(ce, tok, pairs),
        'rustLogits': [l[0] for l in rust_pair_logits(tok, model, pairs)],
        'logits': ce_predict(ce, pairs, torch.nn.Identity()),
        'sigmoid': ce_predict(ce, pairs, torch.nn.Sigmoid()),
        'batchSize1': ce_predict(ce, pairs, torch.nn.Identity(), batch_size=1),
    }


def CrossEncoder_load(folder, model):
    """A CrossEncoder over the in-memory model (the folder keeps only ONNX weights)."""
    from sentence_transformers import CrossEncoder
    tmp = folder + '.pt'
    clean(tmp)
    model.save_pretrained(tmp)
    for f in os.listdir(folder):
        p = os.path.join(folder, f)
        if os.path.isfile(p) and f != 'config.json':
            shutil.copy(p, tmp)
    ce = CrossEncoder(tmp, max_length=MAX_LEN, device='cpu')
    shutil.rmtree(tmp)
    return ce


def ce_predict(ce, pairs, activation, batch_size=4):
    out = ce.predict(pairs, activation_fn=activation, batch_size=batch_size, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float64).tolist()


def make_xlmr_ce(tok, queries, docs):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    folder = os.path.join(OUT, 'tiny-xlmr-ce')
    clean(folder)
    seed(2)
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=MAX_LEN + 2, type_vocab_size=1,
                              pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, num_labels=2)
    model = XLMRobertaForSequenceClassification(config)
    scaled_init(model, 2)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    export(Logits(model), folder, ['input_ids', 'attention_mask'], ['logits'], {'logits': {0: 'batch'}})
    os.remove(os.path.join(folder, 'model.safetensors'))
    ce = CrossEncoder_load(folder, model)
    pairs = [(q, d) for q in queries for d in docs]
    logits = ce_predict(ce, pairs, torch.nn.Identity())
    softmax = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=-1)[:, 1].tolist()
    model.eval()
    rust = rust_pair_logits(tok, model, pairs)
    return {'pairs': [list(p) for p in pairs], 'transformersAgrees': transformers_agrees(ce, tok, pairs),
            'logits': logits, 'softmax': softmax, 'rustLogits': rust,
            'rustSoftmax': torch.softmax(torch.tensor(rust, dtype=torch.float64), dim=-1)[:, 1].tolist()}


def make_bert_bi(tok, queries, docs):
    from transformers import BertModel
    from sentence_transformers import SentenceTransformer, models as st_models
    folder = os.path.join(OUT, 'tiny-bert-bi')
    clean(folder)
    seed(3)
    bert = BertModel(bert_config(len(tok)), add_pooling_layer=False)
    scaled_init(bert, 3)
    tmp = folder + '.hf'
    clean(tmp)
    bert.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    word = st_models.Transformer(tmp, max_seq_length=MAX_LEN)
    pool = st_models.Pooling(word.get_word_embedding_dimension(), pooling_mode='mean')
    st = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device='cpu')
    st.save(folder)
    shutil.rmtree(tmp)
    os.remove(os.path.join(folder, 'README.md'))  # a model card with dates: not reproducible
    export(Hidden(bert), folder, ['input_ids', 'attention_mask', 'token_type_ids'], ['last_hidden_state'],
           {'last_hidden_state': {0: 'batch', 1: 'sequence'}})
    os.remove(os.path.join(folder, 'model.safetensors'))
    texts = queries + docs
    emb = st.encode(texts, batch_size=4, convert_to_numpy=True)
    emb1 = st.encode(texts, batch_size=1, convert_to_numpy=True)
    return {'texts': texts, 'embeddings': emb.astype(np.float64).tolist(),
            'embeddingsBatchSize1': emb1.astype(np.float64).tolist(),
            'cosine': [[float(np.dot(emb[i], emb[j])) for j in range(len(queries), len(texts))]
                       for i in range(len(queries))]}


def make_colbert(tok, queries, docs):
    from transformers import BertModel
    folder = os.path.join(OUT, 'tiny-colbert')
    clean(folder)
    seed(4)
    bert = BertModel(bert_config(len(tok)), add_pooling_layer=False)
    scaled_init(bert, 4)
    linear = torch.nn.Linear(32, 16, bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.3)
    bert.config.architectures = ['HF_ColBERT']
    bert.config.save_pretrained(folder)
    tok.save_pretrained(folder)
    query_maxlen, doc_maxlen = 16, MAX_LEN
    meta = {'query_token_id': '[unused0]', 'doc_token_id': '[unused1]', 'query_token': '[Q]', 'doc_token': '[D]',
            'query_maxlen': query_maxlen, 'doc_maxlen': doc_maxlen, 'mask_punctuation': True,
            'attend_to_mask_tokens': False, 'dim': 16, 'similarity': 'cosine'}
    with open(os.path.join(folder, 'artifact.metadata'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    model = Hidden(bert, linear)
    export(model, folder, ['input_ids', 'attention_mask', 'token_type_ids'], ['contextual'],
           {'contextual': {0: 'batch', 1: 'sequence'}})

    # colbert-ai's QueryTokenizer / DocTokenizer, written out: a placeholder after [CLS] is
    # replaced by the marker, queries are padded with [MASK] (not attended to), documents
    # drop punctuation embeddings.
    q_id, d_id = tok.convert_tokens_to_ids('[unused0]'), tok.convert_tokens_to_ids('[unused1]')
    mask_id, pad_id = tok.mask_token_id, tok.pad_token_id
    skip = set()
    for symbol in string.punctuation:
        skip.add(tok.encode(symbol, add_special_tokens=False)[0])

    def encode_queries(texts):
        e = tok(['. ' + t for t in texts], padding='max_length', truncation=True, max_length=query_maxlen,
                return_tensors='pt')
        ids, att = e['input_ids'], e['attention_mask']
        ids[:, 1] = q_id
        ids[ids == pad_id] = mask_id
        return ids, att

    def encode_docs(texts):
        e = tok(['. ' + t for t in texts], padding='longest', truncation=True, max_length=doc_maxlen,
                return_tensors='pt')
        ids, att = e['input_ids'], e['attention_mask']
        ids[:, 1] = d_id
        return ids, att

    def embed(ids, att):
        with torch.no_grad():
            return model(ids, att, torch.zeros_like(ids))

    qids, qatt = encode_queries(queries)
    Q = torch.nn.functional.normalize(embed(qids, qatt), dim=-1)
    dids, datt = encode_docs(docs)
    D = embed(dids, datt)
    keep = (datt == 1) & ~torch.isin(dids, torch.tensor(sorted(skip)))
    D = torch.nn.functional.normalize(D, dim=-1) * keep.unsqueeze(-1)
    scores = []
    for qi in range(len(queries)):
        sim = torch.einsum('qh,dth->dqt', Q[qi], D)
        sim = sim.masked_fill(~keep.unsqueeze(1), -1e4)  # keep.sum()==0 cannot occur: [CLS] is kept
        scores.append(sim.max(dim=-1).values.sum(dim=-1).double().tolist())
    return {'queries': queries, 'docs': docs, 'maxsim': scores,
            'queryInputIds': qids.tolist(), 'queryAttentionMask': qatt.tolist(),
            'docInputIds': dids.tolist(), 'docAttentionMask': datt.tolist(),
            'skiplist': sorted(skip)}


def main():
    global LONG
    texts = training_text()
    LONG = texts[0] + ' ' + texts[1]
    os.makedirs(OUT, exist_ok=True)
    queries, docs = inputs()
    wp = wordpiece_tokenizer(texts)
    ug = unigram_tokenizer(texts, wp)
    expected = {
        'generatedBy': COMMAND,
        'versions': versions(),
        'tokenizers': {
            'tiny-bert-ce': tokenizer_expectations(wp, queries, docs),
            'tiny-xlmr-ce': tokenizer_expectations(ug, queries, docs),
        },
        'tiny-bert-ce': make_bert_ce(wp, queries, docs),
        'tiny-xlmr-ce': make_xlmr_ce(ug, queries, docs),
        'tiny-bert-bi': make_bert_bi(wp, queries, docs),
        'tiny-colbert': make_colbert(wp, queries, docs),
    }
    with open(os.path.join(OUT, 'expected.json'), 'w', encoding='utf-8') as f:
        json.dump(expected, f, ensure_ascii=False)
        f.write('\n')
    for name in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, name)
        if os.path.isdir(p):
            size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(p) for f in fs)
            print(f'{name}: {size / 1024:.0f} KiB')


def versions():
    import onnx
    import onnxruntime
    import sentence_transformers
    import tokenizers
    import transformers
    return {'torch': torch.__version__.split('+')[0], 'transformers': transformers.__version__,
            'sentence-transformers': sentence_transformers.__version__, 'tokenizers': tokenizers.__version__,
            'onnx': onnx.__version__, 'onnxruntime': onnxruntime.__version__}


if __name__ == '__main__':
    main()
