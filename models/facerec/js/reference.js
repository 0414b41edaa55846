// face-api's own FaceRecognitionNet on TensorFlow.js (pure-JS CPU backend): the reference
// the PyTorch rebuild is checked against (tests/test_identity_model.py).
// usage: node reference.js FACE_API_DIR CROPS.rgb  ->  stdout: JSON list of 128-d descriptors
// CROPS.rgb holds N aligned 150x150 RGB uint8 crops, back to back.
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [faceApiDir, cropsFile] = process.argv.slice(2);
  const faceapi = require(path.resolve(faceApiDir, 'dist', 'face-api.node-wasm.js'));
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(path.resolve(faceApiDir, 'model'));
  const bytes = fs.readFileSync(cropsFile);
  const size = 150 * 150 * 3;
  if (bytes.length === 0 || bytes.length % size !== 0) throw new Error(`${cropsFile}: not a whole number of 150x150x3 crops`);
  const out = [];
  for (let off = 0; off < bytes.length; off += size) {
    const crop = tf.tensor3d(new Uint8Array(bytes.buffer, bytes.byteOffset + off, size), [150, 150, 3], 'int32');
    out.push(Array.from(await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(crop)));
    crop.dispose();
  }
  process.stdout.write(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, descriptors: out }));
}

main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
