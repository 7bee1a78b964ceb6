export * from '@w/util';
export const ui = 1;
