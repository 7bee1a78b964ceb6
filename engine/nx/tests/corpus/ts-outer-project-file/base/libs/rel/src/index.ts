import { helper } from '../../util/src/helper';
export const rel = helper;
