// face-api's own SsdMobilenetv1 on TensorFlow.js (pure-JS CPU backend): the reference the
// PyTorch rebuild (models/ssd_mobilenet/) is checked against (tests/test_ssd_model.py).
// usage: node ssd_reference.js FACE_API_DIR INPUTS.rgb  ->  stdout: JSON, per input the
// decoded boxes (5118 x [ymin, xmin, ymax, xmax], 0..1) and face scores before NMS.
// INPUTS.rgb holds N 512x512 RGB uint8 images back to back (already square: no resize, no pad).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [faceApiDir, inputsFile] = process.argv.slice(2);
  const faceapi = require(path.resolve(faceApiDir, 'dist', 'face-api.node-wasm.js'));
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(path.resolve(faceApiDir, 'model'));
  const bytes = fs.readFileSync(inputsFile);
  const size = 512 * 512 * 3;
  if (bytes.length === 0 || bytes.length % size !== 0) throw new Error(`${inputsFile}: not a whole number of 512x512x3 images`);
  const out = [];
  for (let off = 0; off < bytes.length; off += size) {
    const image = tf.tensor4d(new Uint8Array(bytes.buffer, bytes.byteOffset + off, size), [1, 512, 512, 3], 'int32');
    const { boxes, scores } = await faceapi.nets.ssdMobilenetv1.forward(image);
    out.push({ boxes: boxes[0].arraySync(), scores: Array.from(scores[0].dataSync()) });
    boxes.forEach((t) => t.dispose());
    scores.forEach((t) => t.dispose());
    image.dispose();
  }
  process.stdout.write(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, outputs: out }));
}

main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
