// The subset of the ONNX schema (onnx.proto, IR version 8) that an exported inference graph
// needs, declared with protobufjs's reflection API: the field numbers are the ONNX spec's, so
// the encoded bytes are a standard ModelProto any ONNX runtime reads.
import * as protobuf from 'protobufjs';

function message(name: string, fields: [string, number, string, ('repeated' | 'optional')?][]): protobuf.Type {
  const t = new protobuf.Type(name);
  for (const [field, id, type, rule] of fields) t.add(new protobuf.Field(field, id, type, rule ?? 'optional'));
  return t;
}

const root = new protobuf.Root();
const ns = root.define('onnx');
const dimension = message('Dimension', [['dimValue', 1, 'int64'], ['dimParam', 2, 'string']]);
const shape = message('TensorShapeProto', [['dim', 1, 'Dimension', 'repeated']]).add(dimension);
const tensorType = message('Tensor', [['elemType', 1, 'int32'], ['shape', 2, 'TensorShapeProto']]);
ns.add(shape);
ns.add(message('TypeProto', [['tensorType', 1, 'TypeProto.Tensor'], ['denotation', 6, 'string']]).add(tensorType));
ns.add(message('ValueInfoProto', [['name', 1, 'string'], ['type', 2, 'TypeProto'], ['docString', 3, 'string']]));
ns.add(message('TensorProto', [
  ['dims', 1, 'int64', 'repeated'], ['dataType', 2, 'int32'], ['name', 8, 'string'], ['rawData', 9, 'bytes'], ['docString', 12, 'string'],
]));
ns.add(message('AttributeProto', [
  ['name', 1, 'string'], ['f', 2, 'float'], ['i', 3, 'int64'], ['s', 4, 'bytes'], ['t', 5, 'TensorProto'],
  ['floats', 7, 'float', 'repeated'], ['ints', 8, 'int64', 'repeated'], ['docString', 13, 'string'], ['type', 20, 'int32'],
]));
ns.add(message('NodeProto', [
  ['input', 1, 'string', 'repeated'], ['output', 2, 'string', 'repeated'], ['name', 3, 'string'], ['opType', 4, 'string'],
  ['attribute', 5, 'AttributeProto', 'repeated'], ['docString', 6, 'string'], ['domain', 7, 'string'],
]));
ns.add(message('GraphProto', [
  ['node', 1, 'NodeProto', 'repeated'], ['name', 2, 'string'], ['initializer', 5, 'TensorProto', 'repeated'], ['docString', 10, 'string'],
  ['input', 11, 'ValueInfoProto', 'repeated'], ['output', 12, 'ValueInfoProto', 'repeated'], ['valueInfo', 13, 'ValueInfoProto', 'repeated'],
]));
ns.add(message('OperatorSetIdProto', [['domain', 1, 'string'], ['version', 2, 'int64']]));
ns.add(message('ModelProto', [
  ['irVersion', 1, 'int64'], ['producerName', 2, 'string'], ['producerVersion', 3, 'string'], ['domain', 4, 'string'],
  ['modelVersion', 5, 'int64'], ['docString', 6, 'string'], ['graph', 7, 'GraphProto'], ['opsetImport', 8, 'OperatorSetIdProto', 'repeated'],
]));
root.resolveAll();

export const ModelProto = root.lookupType('onnx.ModelProto');

/** AttributeProto.AttributeType values. */
export const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;
/** TensorProto.DataType values. */
export const DATA_TYPE = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float64: 11 } as const;

export function encodeModel(model: Record<string, unknown>): Uint8Array {
  const err = ModelProto.verify(model);
  if (err) throw new Error(`sc.onnx: internal error, invalid ModelProto: ${err}`);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

export function decodeModel(bytes: Uint8Array): Record<string, any> {
  return ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, bytes: Buffer }) as Record<string, any>;
}
