export { Module, copyInto, trackModules, currentModulePath } from './module';
export type { LoadReport } from './module';
export * from './layers';
export * as init from './init';
export * as F from './functional';
export { checkpoint, checkpointed, checkpointModules, isRecomputing } from './checkpoint';
