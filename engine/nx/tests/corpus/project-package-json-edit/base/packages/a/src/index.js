require('b');
