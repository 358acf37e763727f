#!/usr/bin/python3
"""Exports the seed's PyTorch summarizer and music classifier for libpose, with expected outputs.

    /usr/bin/python3 examples/export_seed_models.py [OUT_DIR]      (default: ./seed_models)

Builds POSESummarizer (slide 10) and POSEMusicClassifier (slide 11) -- the seed's classes, copied
verbatim below -- at small example sizes, seeds torch, and writes into OUT_DIR:

  summarizer.safetensors         model.state_dict() exactly as safetensors.torch.save_file writes
  classifier.safetensors         it, no metadata: what a PyTorch user already has. libpose infers
                                 the kind and sizes from the tensors, but not the skip factor:
                                 load with `load_and_run FILE --skip 2`.
  summarizer_meta.safetensors    the same tensors with libpose's metadata ("kind" plus the seed
  classifier_meta.safetensors    constructor's argument names as decimal strings, see pose.h,
                                 "Weight files"): loads with no options.
  summarizer.expected.f32        the model's output on load_and_run's deterministic input, raw
  classifier.expected.f32        little-endian float32 in row-major order, for a parity check
  *.expected.json                what the .f32 holds: shape, batch, seq_len, input recipe.

Then, from a build tree:

  ./examples/load_and_run OUT_DIR/summarizer_meta.safetensors \\
      --expect OUT_DIR/summarizer.expected.f32

The real `safetensors` package is used when it is importable; otherwise a small writer below
produces the same bytes (Debian has python3-torch but no python3-safetensors). Without torch this
script says so and exits 0.
"""

import json
import os
import struct
import sys

try:
    import torch
    import torch.nn as nn
except ImportError:
    print('export_seed_models.py: PyTorch is not installed (on Debian: apt-get install '
          'python3-torch); nothing exported.')
    sys.exit(0)

# ================================================================================================
# Seed modules (slides 3, 6, 9, 10, 11), copied verbatim (example usage omitted). Copying them,
# rather than writing "equivalent" modules, is the point: the state_dict names and the maths are
# exactly what a user of the seed has.
# ================================================================================================


# ---- slide 3 -----------------------------------------------------------------------------------
class SkipWiseAttention(nn.Module):
    def __init__(self, dim, skip_factor):
        super().__init__()
        self.dim = dim
        self.skip_factor = skip_factor
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x):
        seq_len = x.size(1)
        attend_positions = torch.arange(0, seq_len, self.skip_factor)

        q = self.query(x)
        k = self.key(x[:, attend_positions, :])
        v = self.value(x[:, attend_positions, :])

        attn = torch.matmul(q, k.transpose(-2, -1)) / (self.dim ** 0.5)
        attn = torch.softmax(attn, dim=-1)

        return torch.matmul(attn, v)


# ---- slide 6 -----------------------------------------------------------------------------------
class POSELayer(nn.Module):
    def __init__(self, dim, skip_factor, ff_dim, dropout=0.1):
        super().__init__()
        self.attn = SkipWiseAttention(dim, skip_factor)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim),
            nn.ReLU(),
            nn.Linear(ff_dim, dim)
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        attn_output = self.attn(x)
        x = self.norm1(x + self.dropout(attn_output))
        ff_output = self.ff(x)
        x = self.norm2(x + self.dropout(ff_output))
        return x


# ---- slide 9 -----------------------------------------------------------------------------------
class POSETransformerEncoder(nn.Module):
    def __init__(self, dim, ff_dim, num_layers, skip_factor):
        super().__init__()
        self.layers = nn.ModuleList([
            POSELayer(dim, skip_factor, ff_dim)
            for _ in range(num_layers)
        ])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# ---- slide 10 ----------------------------------------------------------------------------------
class POSESummarizer(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_layers, skip_factor):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.pose_encoder = POSETransformerEncoder(embed_dim, embed_dim*4, num_layers, skip_factor)
        self.output_proj = nn.Linear(embed_dim, vocab_size)

    def forward(self, x):
        x = self.embedding(x)
        x = self.pose_encoder(x)
        return self.output_proj(x)


# ---- slide 11 ----------------------------------------------------------------------------------
class POSEMusicClassifier(nn.Module):
    def __init__(self, input_dim, hidden_dim, num_layers, skip_factor, num_genres):
        super().__init__()
        self.feature_extractor = nn.Linear(input_dim, hidden_dim)
        self.pose_encoder = POSETransformerEncoder(hidden_dim, hidden_dim*4, num_layers, skip_factor)
        self.classifier = nn.Linear(hidden_dim, num_genres)

    def forward(self, x):
        x = self.feature_extractor(x)
        x = self.pose_encoder(x)
        x = x.mean(dim=1)  # Global average pooling
        return self.classifier(x)


# ================================================================================================
# safetensors writing.
# ================================================================================================

# The reference implementation's dtype enum order: it lays tensors out by dtype (descending), then
# by name. Only F32 is written here, so in practice the order is by name.
_DTYPE_ORDER = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32',
                'U32', 'F32', 'F64', 'I64', 'U64']


def _builtin_save_file(tensors, path, metadata=None):
    """Same bytes as safetensors.torch.save_file for F32 tensors: 8-byte little-endian header
    length, compact JSON header ("__metadata__" first, then tensors in data order) padded with
    spaces to a multiple of 8, then the raw little-endian data."""
    entries = []
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise TypeError('%s: this writer handles float32 only, got %s' % (name, t.dtype))
        arr = t.detach().contiguous().cpu().numpy()
        entries.append((name, 'F32', list(t.shape), arr.astype('<f4', copy=False).tobytes()))
    entries.sort(key=lambda e: (-_DTYPE_ORDER.index(e[1]), e[0]))
    header = {}
    if metadata:
        header['__metadata__'] = dict(sorted(metadata.items()))
    offset = 0
    for name, dtype, shape, data in entries:
        header[name] = {'dtype': dtype, 'shape': shape,
                        'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
    hjson = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hjson += b' ' * ((8 - len(hjson) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hjson)))
        f.write(hjson)
        for entry in entries:
            f.write(entry[3])


try:
    from safetensors.torch import save_file
    WRITER = 'safetensors.torch.save_file'
except ImportError:
    save_file = _builtin_save_file
    WRITER = 'built-in writer (safetensors package not installed)'


# ================================================================================================
# The deterministic inputs load_and_run.c builds. Every value is an integer over a power of two,
# so C and Python produce bit-identical float32 inputs with no libm involved.
# ================================================================================================

def recipe_index(n):
    return (torch.arange(n, dtype=torch.int64) * 7919 + 13)


def float_input(batch, seq_len, width):
    n = batch * seq_len * width
    return ((recipe_index(n) % 2001 - 1000).to(torch.float32) / 1024.0).reshape(batch, seq_len,
                                                                                  width)


def token_input(batch, seq_len, vocab_size):
    return (recipe_index(batch * seq_len) % vocab_size).reshape(batch, seq_len)


# The same defaults as load_and_run.c's --batch and --seq-len.
BATCH, SEQ_LEN = 2, 12


def export(out_dir, name, model, kind, meta, x):
    model.eval()
    sd = model.state_dict()
    plain = os.path.join(out_dir, name + '.safetensors')
    with_meta = os.path.join(out_dir, name + '_meta.safetensors')
    save_file(sd, plain)
    save_file(sd, with_meta, metadata=dict({'kind': kind}, **{k: str(v) for k, v in meta.items()}))

    with torch.no_grad():
        y = model(x)
    expected = os.path.join(out_dir, name + '.expected.f32')
    with open(expected, 'wb') as f:
        f.write(y.contiguous().numpy().astype('<f4', copy=False).tobytes())
    sidecar = {
        'model': name + '.safetensors / ' + name + '_meta.safetensors',
        'kind': kind,
        'constructor': meta,
        'batch': BATCH,
        'seq_len': SEQ_LEN,
        'input': ('tokens[i] = (i * 7919 + 13) % vocab_size' if kind == 'summarizer' else
                  'x[i] = ((i * 7919 + 13) % 2001 - 1000) / 1024.0'),
        'input_note': 'i is the flat row-major index; every sequence has length seq_len',
        'output_shape': list(y.shape),
        'output_dtype': 'float32, little-endian, row-major, no header',
        'torch': torch.__version__,
    }
    with open(os.path.join(out_dir, name + '.expected.json'), 'w') as f:
        json.dump(sidecar, f, indent=2)
        f.write('\n')
    print('  %-30s %s, %d tensors' % (name + '.safetensors', kind, len(sd)))
    print('  %-30s same tensors + metadata %s' % (name + '_meta.safetensors',
                                                  json.dumps(meta, separators=(',', ':'))))
    print('  %-30s output %s on the recipe input (batch %d, seq_len %d)'
          % (name + '.expected.f32', 'x'.join(str(d) for d in y.shape), BATCH, SEQ_LEN))


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else 'seed_models'
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)  # one summation order, so reruns give identical expected outputs

    summ = {'vocab_size': 1000, 'embed_dim': 64, 'num_layers': 2, 'skip_factor': 2}
    clf = {'input_dim': 128, 'hidden_dim': 64, 'num_layers': 2, 'skip_factor': 2,
           'num_genres': 10}

    print('exporting to %s/ with %s' % (out_dir, WRITER))
    torch.manual_seed(0)
    export(out_dir, 'summarizer', POSESummarizer(**summ), 'summarizer', summ,
           token_input(BATCH, SEQ_LEN, summ['vocab_size']))
    torch.manual_seed(1)
    export(out_dir, 'classifier', POSEMusicClassifier(**clf), 'classifier', clf,
           float_input(BATCH, SEQ_LEN, clf['input_dim']))

    print('\ncheck libpose against these outputs from a build tree:')
    for name in ('summarizer', 'classifier'):
        print('  ./examples/load_and_run %s/%s_meta.safetensors --expect %s/%s.expected.f32'
              % (out_dir, name, out_dir, name))
        print('  ./examples/load_and_run %s/%s.safetensors --skip 2 --expect %s/%s.expected.f32'
              % (out_dir, name, out_dir, name))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
