import type { OpCase } from '../case';
import { coreCases } from './core';
import { nn2Cases } from './nn2';

export const allCases: OpCase[] = [...coreCases, ...nn2Cases];
