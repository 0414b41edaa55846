// face-api's own TinyFaceDetector on TensorFlow.js (pure-JS CPU backend): the reference the
// PyTorch rebuild (models/tiny_face/) is checked against (tests/test_tiny_face_model.py).
// usage: node tiny_reference.js FACE_API_DIR SIZE INPUTS.rgb  ->  stdout: JSON, per input the
// network's raw output (S/32 x S/32 x 25). INPUTS.rgb: N SIZExSIZE RGB uint8 images back to back.
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [faceApiDir, sizeArg, inputsFile] = process.argv.slice(2);
  const size = Number(sizeArg);
  const faceapi = require(path.resolve(faceApiDir, 'dist', 'face-api.node-wasm.js'));
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.tinyFaceDetector.loadFromDisk(path.resolve(faceApiDir, 'model'));
  const bytes = fs.readFileSync(inputsFile);
  const n = size * size * 3;
  if (bytes.length === 0 || bytes.length % n !== 0) throw new Error(`${inputsFile}: not a whole number of ${size}x${size}x3 images`);
  const out = [];
  for (let off = 0; off < bytes.length; off += n) {
    const image = tf.tensor4d(new Uint8Array(bytes.buffer, bytes.byteOffset + off, n), [1, size, size, 3], 'int32');
    const raw = await faceapi.nets.tinyFaceDetector.forward(image, size);
    out.push(raw.arraySync()[0]);
    raw.dispose();
    image.dispose();
  }
  process.stdout.write(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, outputs: out }));
}

main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
