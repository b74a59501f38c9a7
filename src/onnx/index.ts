// sc.onnx: ONNX export of a model's eval-mode forward (export.ts), encoded with protobufjs (proto.ts).
export { exportModel as export, toOnnx } from './export';
export type { ExportOptions, ExportResult } from './export';
export { decodeModel } from './proto';
