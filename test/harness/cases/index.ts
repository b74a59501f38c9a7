import type { OpCase } from '../case';
import { coreCases } from './core';

export const allCases: OpCase[] = [...coreCases];
