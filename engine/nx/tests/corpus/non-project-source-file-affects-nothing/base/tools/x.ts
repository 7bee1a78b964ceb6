import '@w/util';
