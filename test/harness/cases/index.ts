import type { OpCase } from '../case';
import { coreCases } from './core';
import { nn1Cases } from './nn1';

export const allCases: OpCase[] = [...coreCases, ...nn1Cases];
