import type { OpCase } from '../case';
import { coreCases } from './core';
import { nn1Cases } from './nn1';
import { nn2Cases } from './nn2';

export const allCases: OpCase[] = [...coreCases, ...nn1Cases, ...nn2Cases];
