'use strict';
// convhub's TF.js runner: loads a graph model from disk with @tensorflow/tfjs (pure JavaScript,
// CPU backend) and runs it on tensors that Python sends over stdin.
//
//   node runner.js INSTALL_DIR MODEL_DIR
//
// Every message, both ways, is one frame: a uint32 little-endian header length, a UTF-8 JSON
// header, then the raw little-endian bytes of the tensors the header lists, one after another.
//   request  {"tensors": [{"name", "dtype", "shape", "byteLength"}, ...]}
//   reply    {"tensors": [...]}  or  {"error": "message"}
// The first frame Node writes is {"ready": true, ...} once the model is loaded (or an error).
// Tensor names are the signature's names in model.json ("image", "output_0"), not graph names.

const fs = require('fs');
const path = require('path');

const [installDir, modelDir] = process.argv.slice(2);

// stdout carries the frames; whatever the libraries print goes to stderr instead.
for (const level of ['log', 'info', 'debug', 'warn']) {
  console[level] = (...args) => console.error(...args);
}

const tf = require(require.resolve('@tensorflow/tfjs', {paths: [installDir]}));

const ARRAYS = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};

function writeFrame(header, buffers = []) {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length, 0);
  process.stdout.write(Buffer.concat([length, json, ...buffers]));
}

// Reading exact byte counts from stdin.
const chunks = [];
let buffered = 0;
let ended = false;
let wake = null;
process.stdin.on('data', (chunk) => {
  chunks.push(chunk);
  buffered += chunk.length;
  if (wake) wake();
});
process.stdin.on('end', () => {
  ended = true;
  if (wake) wake();
});

async function readBytes(n) {
  while (buffered < n) {
    if (ended) return null;
    await new Promise((resolve) => { wake = resolve; });
    wake = null;
  }
  const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  chunks.length = 0;
  const rest = all.subarray(n);
  if (rest.length) chunks.push(rest);
  buffered = rest.length;
  return all.subarray(0, n);
}

async function readFrame() {
  const length = await readBytes(4);
  if (length === null) return null;
  const header = JSON.parse((await readBytes(length.readUInt32LE(0))).toString('utf8'));
  const total = (header.tensors || []).reduce((sum, t) => sum + t.byteLength, 0);
  const payload = total ? await readBytes(total) : Buffer.alloc(0);
  return {header, payload};
}

// An IO handler reading model.json and its weight shards from disk; tf.io's own helper maps the
// JSON to ModelArtifacts (modelTopology, weightSpecs, weightData, format, generatedBy,
// convertedBy, signature, userDefinedMetadata, and the initializer of models with tables).
function fileHandler(dir) {
  return {
    load: async () => {
      const modelJSON = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const shards = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const shard of group.paths) shards.push(fs.readFileSync(path.join(dir, shard)));
        }
        const data = Buffer.concat(shards);
        return [specs, data.buffer.slice(data.byteOffset, data.byteOffset + data.length)];
      });
    },
  };
}

function toTensor(spec, bytes) {
  const ArrayType = ARRAYS[spec.dtype];
  if (!ArrayType) throw new Error(`input ${spec.name}: dtype ${spec.dtype} is not supported`);
  // A copy, so the typed array starts on an aligned offset.
  const aligned = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  return tf.tensor(new ArrayType(aligned), spec.shape, spec.dtype);
}

async function run(model, signature, header, payload) {
  const feeds = {};
  let offset = 0;
  for (const spec of header.tensors) {
    const input = signature.inputs[spec.name];
    if (!input) throw new Error(`the model has no input ${JSON.stringify(spec.name)}`);
    feeds[input.name] = toTensor(spec, payload.subarray(offset, offset + spec.byteLength));
    offset += spec.byteLength;
  }
  const names = Object.keys(signature.outputs);
  let results = [];
  try {
    // executeAsync also runs models with control flow, which execute() rejects.
    results = await model.executeAsync(feeds, names.map((n) => signature.outputs[n].name));
    if (!Array.isArray(results)) results = [results];
    const specs = [];
    const buffers = [];
    for (let i = 0; i < names.length; i++) {
      const tensor = results[i];
      if (!ARRAYS[tensor.dtype]) throw new Error(`output ${names[i]}: dtype ${tensor.dtype} is not supported`);
      const data = await tensor.data();
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      specs.push({name: names[i], dtype: tensor.dtype, shape: tensor.shape, byteLength: bytes.length});
      buffers.push(bytes);
    }
    writeFrame({tensors: specs}, buffers);
  } finally {
    tf.dispose(Object.values(feeds));
    tf.dispose(results);
  }
}

async function main() {
  let model;
  let signature;
  try {
    await tf.setBackend('cpu');
    await tf.ready();
    model = await tf.loadGraphModel(fileHandler(modelDir));
    signature = model.modelSignature;
    if (!signature || !signature.inputs || !signature.outputs) {
      throw new Error('model.json has no signature with inputs and outputs');
    }
  } catch (error) {
    writeFrame({error: `loading the model failed: ${error.message}`});
    process.exitCode = 1;
    process.stdin.destroy();
    return;
  }
  writeFrame({ready: true, tfjs: tf.version.tfjs, backend: tf.getBackend()});
  for (;;) {
    const frame = await readFrame();
    if (frame === null) return;  // Python closed stdin: done
    try {
      await run(model, signature, frame.header, frame.payload);
    } catch (error) {
      writeFrame({error: error.message});
    }
  }
}

main();
